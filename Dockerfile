# syntax=docker/dockerfile:1
#
# The kubectl-svcproxy image: the node proxy that deploy/daemonset.yaml runs (the same binary is also
# the kubectl plugin, which krew installs from release archives, not from this image).
#
#   docker build -t ghcr.io/kubectl-svcproxy/kubectl-svcproxy:v0.1.0 .
#
# BuildKit is needed for the cache mounts (the default builder of current Docker releases).

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Only what the build reads; .dockerignore keeps target/ and the rest out of the context.
# benches/ is copied because Cargo.toml declares the engine benchmark, and Cargo refuses a
# manifest whose declared targets are missing.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# --locked: build exactly the dependency versions in Cargo.lock, or fail.
# The registry and target caches persist between builds on the same builder; the binary is copied
# out of the cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kubectl-svcproxy \
    && install -D -m 0755 target/release/kubectl-svcproxy /out/kubectl-svcproxy

# --- runtime -----------------------------------------------------------------------------------
# Debian bookworm, the same release as the builder, so the binary's glibc matches.
FROM debian:bookworm-slim
# - iptables: ships both backends, iptables-nft (what plain `iptables` runs here) and
#   iptables-legacy, with their -save and -restore tools and the ip6tables twins. A backend is
#   chosen by program name (iptables-legacy-restore, ...): switching the alternatives at run time,
#   as kube-proxy's image does, is impossible with the DaemonSet's read-only root filesystem.
# - kmod: modprobe, for the privileged init container (`proxy --init-only`), which loads the
#   nf_conntrack module from the host's /lib/modules when the node has not loaded it.
# The nfacct accounting objects and conntrack cleanup go through netlink: no nfacct or conntrack
# tools are needed.
# - ca-certificates: the system trust store, for a kubeconfig that relies on it rather than on the
#   cluster CA (the one in deploy/ names the cluster CA).
# Versions are not pinned: bookworm's security updates should land on every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        iptables \
        kmod \
    && rm -rf /var/lib/apt/lists/* \
    && iptables-legacy --version \
    && iptables-nft --version \
    && ip6tables-legacy-restore --version \
    && ip6tables-nft-restore --version
COPY --from=builder /out/kubectl-svcproxy /usr/local/bin/kubectl-svcproxy
COPY LICENSE /usr/share/doc/kubectl-svcproxy/LICENSE
LABEL org.opencontainers.image.title="kubectl-svcproxy" \
      org.opencontainers.image.description="A kube-proxy compatible iptables service proxy, and diagnostics that trace a Service to its pods" \
      org.opencontainers.image.source="https://github.com/kubectl-svcproxy/kubectl-svcproxy" \
      org.opencontainers.image.licenses="Apache-2.0"
# The image runs as root on purpose, and the DaemonSet takes away everything root could do but
# NET_ADMIN and NET_RAW (capabilities drop ALL, allowPrivilegeEscalation: false, read-only root
# filesystem). A non-root user does not work for this proxy:
# - Kubernetes adds capabilities to the bounding set only; a process that is not root gets none of
#   them in its effective set (Kubernetes sets no ambient capabilities). The only way round is
#   file capabilities (setcap) on this binary and on every iptables tool it runs, which in turn
#   needs allowPrivilegeEscalation: true, a weaker setting than the one used now.
# - /run/xtables.lock is a host file owned by root that the proxy must open for writing, to take
#   the lock every iptables user on the node shares.
# - User namespaces (hostUsers: false) cannot be combined with hostNetwork.
# So "non-root" would buy nothing here: NET_ADMIN over the host's network namespace is the
# privilege that matters, and it is needed either way.
ENTRYPOINT ["/usr/local/bin/kubectl-svcproxy"]
CMD ["--help"]
