# syntax=docker/dockerfile:1
# Vestibule's image for those with a registry: the same image as deploy/build-image.sh builds
# offline with buildah. Both lay out the root filesystem with deploy/image/rootfs.sh: the
# stripped binary as /vestibule (with the file capability cap_net_bind_service), only the
# shared libraries it links, the CA bundle, and the numeric user 65532, on `scratch`.
#
#   docker build -t vestibule:0.1.0 .

FROM rust:1-slim-bookworm AS builder
# aws-lc-rs builds C (and assembly) code; rootfs.sh uses strip, setcap and the CA bundle.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything but what .dockerignore leaves out (target/, .git/).
COPY . .
RUN cargo build --release --locked --bin vestibule \
 && deploy/image/rootfs.sh target/release/vestibule /rootfs

FROM scratch
# The binary carries the file capability cap_net_bind_service, so that user 65532 binds ports
# 80 and 443 under the Deployment's `capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}`.
# buildah copy keeps it (deploy/run-image.sh binds port 80 to show it); some builders drop
# extended attributes on COPY: check with getcap on the image's /vestibule, or else use
# --http-port/--https-port above 1024.
COPY --from=builder /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title=vestibule org.opencontainers.image.version=0.1.0
# A numeric user, so that Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 80/tcp 443/tcp 443/udp 10254/tcp
ENTRYPOINT ["/vestibule"]
CMD ["controller"]
