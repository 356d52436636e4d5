//! The resources the test API server serves, and how request paths map onto them.

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural name as it appears in paths (`services`).
    pub plural: &'static str,
    /// `kind` of one object (`Service`).
    pub kind: &'static str,
    /// Namespace-scoped (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// Field-selector fields the API server accepts for this resource, beyond `metadata.name` and
    /// `metadata.namespace` (which every resource accepts).
    pub extra_fields: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a field selector may use `field`.
    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.extra_fields.contains(&field)
    }
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "reason",
    "type",
];

/// Everything served.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        extra_fields: &[],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
        extra_fields: &["spec.unschedulable"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        extra_fields: &["spec.nodeName", "status.phase", "status.podIP"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        extra_fields: EVENT_FIELDS,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        extra_fields: &[],
    },
    ResourceDef {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
        extra_fields: &[],
    },
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        extra_fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "reason",
            "type",
        ],
    },
];

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|def| def.group == group && def.version == version && def.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|def| def.kind == kind && def.api_version() == api_version)
}

/// What a request path addresses.
#[derive(Debug)]
pub enum Route {
    /// `/version`.
    Version,
    /// A collection: every namespace (`namespace: None`) or one.
    Collection {
        def: &'static ResourceDef,
        namespace: Option<String>,
    },
    /// One object.
    Object {
        def: &'static ResourceDef,
        namespace: Option<String>,
        name: String,
    },
    /// `/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy[/PATH]`.
    PodProxy {
        namespace: String,
        name: String,
        port: Option<String>,
        /// The path to forward, starting with `/`.
        path: String,
    },
    /// `/api/v1/namespaces/NS/pods/NAME/exec`.
    PodExec { namespace: String, name: String },
    /// Nothing served here.
    Unknown,
}

/// Maps a request path onto a [`Route`].
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Route::Version,
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    let lookup = |plural: &str| find(group, version, plural);
    match rest {
        [plural] => match lookup(plural) {
            Some(def) => Route::Collection {
                def,
                namespace: None,
            },
            None => Route::Unknown,
        },
        [plural, name] => match lookup(plural) {
            Some(def) if !def.namespaced => Route::Object {
                def,
                namespace: None,
                name: (*name).to_string(),
            },
            _ => Route::Unknown,
        },
        ["namespaces", namespace, plural] => match lookup(plural) {
            Some(def) if def.namespaced => Route::Collection {
                def,
                namespace: Some((*namespace).to_string()),
            },
            _ => Route::Unknown,
        },
        ["namespaces", namespace, plural, name] => match lookup(plural) {
            Some(def) if def.namespaced => Route::Object {
                def,
                namespace: Some((*namespace).to_string()),
                name: (*name).to_string(),
            },
            _ => Route::Unknown,
        },
        ["namespaces", namespace, "pods", name, "exec"] if group.is_empty() => Route::PodExec {
            namespace: (*namespace).to_string(),
            name: (*name).to_string(),
        },
        ["namespaces", namespace, "pods", target, "proxy", tail @ ..] if group.is_empty() => {
            let (name, port) = match target.split_once(':') {
                Some((name, port)) => (name, Some(port.to_string())),
                None => (*target, None),
            };
            Route::PodProxy {
                namespace: (*namespace).to_string(),
                name: name.to_string(),
                port,
                path: format!("/{}", tail.join("/")),
            }
        }
        _ => Route::Unknown,
    }
}
