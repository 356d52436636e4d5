//! The result types as other code sees them: kube-proxy's outcome strings and the JSON shape.

use serde_json::json;

use crate::core::trace::{Candidate, Origin, Verdict};

use super::cluster::{POD, cluster};
use super::tcp;

fn candidate(destination: &str, share: f64) -> Candidate {
    Candidate {
        destination: destination.to_string(),
        endpoint_chain: "KUBE-SEP-X".to_string(),
        share,
        masquerade: false,
    }
}

#[test]
fn outcome_strings_follow_kube_proxy_tests() {
    let two = Verdict::Dnat(vec![
        candidate("10.180.0.4:80", 0.5),
        candidate("10.180.0.5:80", 0.5),
    ]);
    assert_eq!(two.outcome_string(), "10.180.0.4:80, 10.180.0.5:80");
    assert_eq!(
        Verdict::Dnat(vec![candidate("[fd00::1]:80", 1.0)]).outcome_string(),
        "[fd00::1]:80"
    );
    assert_eq!(Verdict::Reject.outcome_string(), "REJECT");
    assert_eq!(Verdict::Drop.outcome_string(), "DROP");
    assert_eq!(Verdict::Accept.outcome_string(), "ACCEPT");
    assert_eq!(Verdict::NoMatch.outcome_string(), "");
    assert!(Verdict::Drop.candidates().is_empty());
}

#[test]
fn traces_serialize_to_json() {
    let trace = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.41", 80);
    let value = serde_json::to_value(&trace).unwrap();
    assert_eq!(value["masquerade"], json!(false));
    assert_eq!(value["verdict"]["verdict"], json!("dnat"));
    assert_eq!(
        value["verdict"]["candidates"][0]["destination"],
        json!("10.180.0.1:80")
    );
    assert_eq!(
        value["verdict"]["candidates"][0]["endpointChain"],
        json!("KUBE-SEP-1A")
    );
    assert_eq!(value["verdict"]["candidates"][0]["share"], json!(1.0));

    let steps = value["steps"].as_array().unwrap();
    let first = &steps[0];
    assert_eq!(first["stage"], json!("nat"));
    assert_eq!(first["table"], json!("nat"));
    assert_eq!(first["chain"], json!("PREROUTING"));
    assert_eq!(first["evaluation"]["result"], json!("matched"));
    assert_eq!(
        first["action"],
        json!({"action": "jump", "chain": "KUBE-SERVICES"})
    );
    let miss = steps
        .iter()
        .find(|s| s["evaluation"]["result"] == json!("not-matched"))
        .unwrap();
    assert_eq!(miss["chain"], json!("KUBE-SVC-1"));
    assert_eq!(
        miss["evaluation"]["reason"],
        json!("source 10.0.0.2 is in 10.0.0.0/8 (excluded by !)")
    );
    assert_eq!(miss["action"], json!({"action": "next"}));
    let filter = steps
        .iter()
        .find(|s| s["stage"] == json!("filter"))
        .unwrap();
    assert_eq!(filter["destination"], json!("10.180.0.1:80"));

    let reject = tcp(&cluster(), Origin::Forwarded, POD, "172.30.0.46", 80);
    assert_eq!(
        serde_json::to_value(&reject).unwrap()["verdict"],
        json!({"verdict": "reject"})
    );
}
