//! Loading a snapshot bundle's `cluster.json` into a [`super::ClusterState`].
