//! nfacct objects through netlink against the real kernel (in the namespace the test runs in; the
//! object is deleted at the end).

mod support;

use support::netns::skip_unless_available;
use svcproxy::iptables::nfacct;

#[test]
fn create_read_and_delete_an_accounting_object() {
    if !skip_unless_available("create_read_and_delete_an_accounting_object") {
        return;
    }
    let name = format!("svcp_test_{}", std::process::id());
    nfacct::ensure(&name).expect("create");
    nfacct::ensure(&name).expect("creating it again is fine");
    let counts = nfacct::counts(&name).expect("read");
    assert_eq!((counts.packets, counts.bytes), (0, 0));
    nfacct::delete(&name).expect("delete");
    let gone = nfacct::counts(&name);
    assert!(gone.is_err(), "deleted object cannot be read: {gone:?}");
}
