//! The client configuration: kubeconfig files (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`) with
//! the chosen context, cluster and user, or the pod's service account.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};

use super::KubeError;
use crate::cli::GlobalArgs;

/// Which cluster to talk to, as the global flags say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeOptions {
    /// `--kubeconfig PATH`: this one file, instead of `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME`, instead of the kubeconfig's `current-context`.
    pub context: Option<String>,
    /// `--cluster NAME`, instead of the context's cluster.
    pub cluster: Option<String>,
    /// `--user NAME`, instead of the context's user.
    pub user: Option<String>,
}

impl From<&GlobalArgs> for KubeOptions {
    fn from(args: &GlobalArgs) -> Self {
        KubeOptions {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
            cluster: args.cluster.clone(),
            user: args.user.clone(),
        }
    }
}

/// What the environment contributes to the choice of configuration. [`ConfigEnv::from_process`] reads
/// it; tests build it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEnv {
    /// The `KUBECONFIG` variable: a list of paths joined with `:`.
    pub kubeconfig_var: Option<OsString>,
    /// The home directory (`~/.kube/config` is the default kubeconfig).
    pub home: Option<PathBuf>,
    /// Whether this runs in a pod (`KUBERNETES_SERVICE_HOST` is set).
    pub in_cluster: bool,
}

impl ConfigEnv {
    /// Reads `KUBECONFIG`, `HOME` and `KUBERNETES_SERVICE_HOST`.
    pub fn from_process() -> ConfigEnv {
        ConfigEnv {
            kubeconfig_var: std::env::var_os("KUBECONFIG"),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty()),
        }
    }
}

/// A client for the cluster `options` choose (see [`config_from`] for the rules).
pub async fn client(options: &KubeOptions) -> Result<Client, KubeError> {
    let config = config(options).await?;
    Client::try_from(config).map_err(|source| KubeError::Client { source })
}

/// The client configuration for `options` in this process's environment.
pub async fn config(options: &KubeOptions) -> Result<Config, KubeError> {
    config_from(options, &ConfigEnv::from_process()).await
}

/// The client configuration for `options` in `env`, chosen as kubectl does:
///
/// 1. `--kubeconfig PATH`: that file only; it must exist.
/// 2. Else the `KUBECONFIG` list (files that do not exist are skipped; the rest are merged, the first
///    to set a value wins), or `~/.kube/config` when the variable is unset or empty.
/// 3. Else, in a pod, its service account (in-cluster configuration); `--context`, `--cluster` and
///    `--user` need a kubeconfig, so with one of them this is an error.
///
/// In a kubeconfig, `--context` picks the context (else `current-context`), and `--cluster` and
/// `--user` override the context's. Names that are not in the kubeconfig are errors that list the
/// names that are.
pub async fn config_from(options: &KubeOptions, env: &ConfigEnv) -> Result<Config, KubeError> {
    if let Some(path) = &options.kubeconfig {
        if !path.exists() {
            return Err(KubeError::KubeconfigNotFound { path: path.clone() });
        }
        let kubeconfig = read(path)?;
        return select(
            kubeconfig,
            &format!("kubeconfig {}", path.display()),
            options,
        )
        .await;
    }

    let (candidates, from_var) = candidates(env);
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.is_file()).collect();
    if existing.is_empty() {
        let looked_at = describe_search(&candidates, from_var);
        let flag = [
            ("context", &options.context),
            ("cluster", &options.cluster),
            ("user", &options.user),
        ]
        .into_iter()
        .find_map(|(flag, value)| value.as_ref().map(|_| flag));
        if let Some(flag) = flag {
            return Err(KubeError::FlagWithoutKubeconfig { flag, looked_at });
        }
        if env.in_cluster {
            return Config::incluster().map_err(|source| KubeError::InCluster { source });
        }
        return Err(KubeError::NoConfig { looked_at });
    }

    let mut merged = Kubeconfig::default();
    for path in &existing {
        merged = merged
            .merge(read(path)?)
            .map_err(|source| KubeError::ReadKubeconfig {
                path: (*path).clone(),
                source,
            })?;
    }
    let origin = match existing.as_slice() {
        [one] => format!("kubeconfig {}", one.display()),
        many => format!(
            "the kubeconfig files {} (from KUBECONFIG)",
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    select(merged, &origin, options).await
}

fn read(path: &Path) -> Result<Kubeconfig, KubeError> {
    Kubeconfig::read_from(path).map_err(|source| KubeError::ReadKubeconfig {
        path: path.to_path_buf(),
        source,
    })
}

/// The kubeconfig paths to try, and whether they come from `KUBECONFIG`.
fn candidates(env: &ConfigEnv) -> (Vec<PathBuf>, bool) {
    if let Some(var) = &env.kubeconfig_var {
        let paths: Vec<PathBuf> = std::env::split_paths(var)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return (paths, true);
        }
    }
    let default = env
        .home
        .as_ref()
        .map(|home| home.join(".kube").join("config"));
    (default.into_iter().collect(), false)
}

fn describe_search(candidates: &[PathBuf], from_var: bool) -> String {
    let list = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match (from_var, candidates.is_empty()) {
        (true, _) => format!("none of the KUBECONFIG files exists ({list})"),
        (false, false) => format!("KUBECONFIG is unset and {list} does not exist"),
        (false, true) => "KUBECONFIG and HOME are unset".to_string(),
    }
}

/// Checks the chosen names against the kubeconfig, then builds the configuration.
async fn select(
    kubeconfig: Kubeconfig,
    origin: &str,
    options: &KubeOptions,
) -> Result<Config, KubeError> {
    let contexts: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let Some(context_name) = options
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .filter(|name| !name.is_empty())
    else {
        return Err(KubeError::NoCurrentContext {
            origin: origin.to_string(),
            contexts,
        });
    };
    let Some(context) = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
    else {
        return Err(KubeError::UnknownContext {
            name: context_name,
            origin: origin.to_string(),
            contexts,
        });
    };

    let cluster_name = options
        .cluster
        .clone()
        .unwrap_or_else(|| context.cluster.clone());
    if !kubeconfig.clusters.iter().any(|c| c.name == cluster_name) {
        return Err(KubeError::UnknownCluster {
            name: cluster_name,
            origin: origin.to_string(),
            clusters: kubeconfig.clusters.iter().map(|c| c.name.clone()).collect(),
        });
    }
    if let Some(user) = &options.user
        && !kubeconfig.auth_infos.iter().any(|u| &u.name == user)
    {
        return Err(KubeError::UnknownUser {
            name: user.clone(),
            origin: origin.to_string(),
            users: kubeconfig
                .auth_infos
                .iter()
                .map(|u| u.name.clone())
                .collect(),
        });
    }

    let choice = KubeConfigOptions {
        context: Some(context_name.clone()),
        cluster: options.cluster.clone(),
        user: options.user.clone(),
    };
    Config::from_custom_kubeconfig(kubeconfig, &choice)
        .await
        .map_err(|source| KubeError::InvalidKubeconfig {
            origin: format!("{origin}, context {context_name:?}"),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CONTEXTS: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: blue
  cluster:
    server: https://blue.example:6443
- name: green
  cluster:
    server: https://green.example:6443
users:
- name: alice
  user:
    token: alice-token
- name: bob
  user:
    token: bob-token
contexts:
- name: blue-alice
  context:
    cluster: blue
    user: alice
    namespace: web
- name: green-bob
  context:
    cluster: green
    user: bob
current-context: blue-alice
";

    const ONLY_GREEN: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: green
  cluster:
    server: https://other-green.example:6443
- name: red
  cluster:
    server: https://red.example:6443
users:
- name: carol
  user:
    token: carol-token
contexts:
- name: red-carol
  context:
    cluster: red
    user: carol
current-context: red-carol
";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a kubeconfig");
        path
    }

    fn no_env() -> ConfigEnv {
        ConfigEnv::default()
    }

    #[tokio::test]
    async fn kubeconfig_flag_reads_that_file_and_its_current_context() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "config", TWO_CONTEXTS);
        let options = KubeOptions {
            kubeconfig: Some(path),
            ..KubeOptions::default()
        };
        let config = config_from(&options, &no_env()).await.expect("a config");
        assert_eq!(config.cluster_url.to_string(), "https://blue.example:6443/");
        assert_eq!(config.default_namespace, "web");
        assert!(config.auth_info.token.is_some(), "the user's token is used");
    }

    #[tokio::test]
    async fn context_cluster_and_user_flags_choose() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "config", TWO_CONTEXTS);
        let options = KubeOptions {
            kubeconfig: Some(path.clone()),
            context: Some("green-bob".into()),
            ..KubeOptions::default()
        };
        let config = config_from(&options, &no_env()).await.expect("a config");
        assert_eq!(
            config.cluster_url.to_string(),
            "https://green.example:6443/"
        );
        assert_eq!(config.default_namespace, "default");

        let options = KubeOptions {
            kubeconfig: Some(path),
            cluster: Some("green".into()),
            user: Some("bob".into()),
            ..KubeOptions::default()
        };
        let config = config_from(&options, &no_env()).await.expect("a config");
        assert_eq!(
            config.cluster_url.to_string(),
            "https://green.example:6443/"
        );
        assert_eq!(
            config.default_namespace, "web",
            "still the current context's namespace"
        );
    }

    #[tokio::test]
    async fn unknown_names_list_the_known_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "config", TWO_CONTEXTS);
        let with = |context: Option<&str>, cluster: Option<&str>, user: Option<&str>| KubeOptions {
            kubeconfig: Some(path.clone()),
            context: context.map(str::to_string),
            cluster: cluster.map(str::to_string),
            user: user.map(str::to_string),
        };
        let error = config_from(&with(Some("prod"), None, None), &no_env())
            .await
            .expect_err("unknown context");
        assert_eq!(
            error.to_string(),
            format!(
                "context \"prod\" is not in kubeconfig {}; its contexts are: blue-alice, green-bob",
                path.display()
            )
        );
        let error = config_from(&with(None, Some("red"), None), &no_env())
            .await
            .expect_err("unknown cluster");
        assert!(
            error.to_string().ends_with("its clusters are: blue, green"),
            "{error}"
        );
        let error = config_from(&with(None, None, Some("mallory")), &no_env())
            .await
            .expect_err("unknown user");
        assert!(
            error.to_string().ends_with("its users are: alice, bob"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn missing_current_context_asks_for_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = TWO_CONTEXTS.replace("current-context: blue-alice\n", "");
        let path = write(dir.path(), "config", &text);
        let options = KubeOptions {
            kubeconfig: Some(path),
            ..KubeOptions::default()
        };
        let error = config_from(&options, &no_env())
            .await
            .expect_err("no context");
        assert!(
            matches!(error, KubeError::NoCurrentContext { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("pass --context NAME (its contexts are: blue-alice, green-bob)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn kubeconfig_flag_to_a_missing_file_is_an_error() {
        let options = KubeOptions {
            kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
            ..KubeOptions::default()
        };
        let error = config_from(&options, &no_env()).await.expect_err("missing");
        assert_eq!(
            error.to_string(),
            "kubeconfig /nonexistent/kubeconfig does not exist; check the --kubeconfig path"
        );
    }

    #[tokio::test]
    async fn kubeconfig_variable_merges_files_first_wins_and_skips_missing_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = write(dir.path(), "a", TWO_CONTEXTS);
        let second = write(dir.path(), "b", ONLY_GREEN);
        let missing = dir.path().join("missing");
        let var = std::env::join_paths([&missing, &first, &second]).expect("a path list");
        let env = ConfigEnv {
            kubeconfig_var: Some(var),
            ..ConfigEnv::default()
        };
        // current-context comes from the first file; cluster `green` from the first file too.
        let config = config_from(&KubeOptions::default(), &env)
            .await
            .expect("a config");
        assert_eq!(config.cluster_url.to_string(), "https://blue.example:6443/");
        let options = KubeOptions {
            context: Some("green-bob".into()),
            ..KubeOptions::default()
        };
        let config = config_from(&options, &env).await.expect("a config");
        assert_eq!(
            config.cluster_url.to_string(),
            "https://green.example:6443/"
        );
        // A context only the second file has.
        let options = KubeOptions {
            context: Some("red-carol".into()),
            ..KubeOptions::default()
        };
        let config = config_from(&options, &env).await.expect("a config");
        assert_eq!(config.cluster_url.to_string(), "https://red.example:6443/");
        let error = config_from(
            &KubeOptions {
                context: Some("nope".into()),
                ..KubeOptions::default()
            },
            &env,
        )
        .await
        .expect_err("unknown context");
        assert!(
            error.to_string().contains(&format!(
                "the kubeconfig files {}, {} (from KUBECONFIG)",
                first.display(),
                second.display()
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn default_path_is_under_home() {
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(home.path().join(".kube")).expect("mkdir");
        write(&home.path().join(".kube"), "config", TWO_CONTEXTS);
        let env = ConfigEnv {
            home: Some(home.path().to_path_buf()),
            kubeconfig_var: Some(OsString::new()),
            in_cluster: false,
        };
        let config = config_from(&KubeOptions::default(), &env)
            .await
            .expect("a config");
        assert_eq!(config.cluster_url.to_string(), "https://blue.example:6443/");
    }

    #[tokio::test]
    async fn nothing_found_names_the_places_looked_at() {
        let home = tempfile::tempdir().expect("temp dir");
        let env = ConfigEnv {
            home: Some(home.path().to_path_buf()),
            ..ConfigEnv::default()
        };
        let error = config_from(&KubeOptions::default(), &env)
            .await
            .expect_err("nothing");
        let expected = format!(
            "no Kubernetes configuration found: KUBECONFIG is unset and {} does not exist, and not running in a pod \
             (KUBERNETES_SERVICE_HOST is unset); pass --kubeconfig PATH or set KUBECONFIG",
            home.path().join(".kube/config").display()
        );
        assert_eq!(error.to_string(), expected);

        let env = ConfigEnv {
            kubeconfig_var: Some(OsString::from("/nope/a:/nope/b")),
            in_cluster: true,
            ..ConfigEnv::default()
        };
        let options = KubeOptions {
            context: Some("x".into()),
            ..KubeOptions::default()
        };
        let error = config_from(&options, &env)
            .await
            .expect_err("a flag needs a kubeconfig");
        assert_eq!(
            error.to_string(),
            "--context needs a kubeconfig, but none was found: none of the KUBECONFIG files exists (/nope/a, /nope/b); \
             pass --kubeconfig PATH or set KUBECONFIG"
        );
    }

    #[tokio::test]
    async fn in_cluster_is_the_fallback() {
        // Outside a pod the in-cluster attempt fails, which shows it was made (rather than NoConfig).
        let env = ConfigEnv {
            in_cluster: true,
            ..ConfigEnv::default()
        };
        match config_from(&KubeOptions::default(), &env).await {
            // Run inside a pod, the service account works.
            Ok(_) => {}
            Err(error) => {
                assert!(matches!(error, KubeError::InCluster { .. }), "{error:?}");
                assert!(
                    error.to_string().contains("in-cluster configuration"),
                    "{error}"
                );
            }
        }
    }

    #[tokio::test]
    async fn unparsable_kubeconfig_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "config", "clusters: [unclosed");
        let options = KubeOptions {
            kubeconfig: Some(path.clone()),
            ..KubeOptions::default()
        };
        let error = config_from(&options, &no_env())
            .await
            .expect_err("bad YAML");
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot use kubeconfig {}: ", path.display())),
            "{error}"
        );
    }

    #[tokio::test]
    async fn context_without_a_server_is_reported_with_the_context() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = TWO_CONTEXTS.replace("    server: https://blue.example:6443\n", "");
        let path = write(dir.path(), "config", &text);
        let options = KubeOptions {
            kubeconfig: Some(path),
            ..KubeOptions::default()
        };
        let error = config_from(&options, &no_env())
            .await
            .expect_err("no server");
        assert!(
            matches!(error, KubeError::InvalidKubeconfig { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("context \"blue-alice\""),
            "{error}"
        );
    }
}
