# syntax=docker/dockerfile:1.7
# Two images from one build, each a target:
#   millrace           the broker and its tools (`millrace serve`, `millrace topics`, `millrace mirror`, …)
#   millrace-operator  the Kubernetes operator
#
#   docker build --target millrace -t millrace:0.1.0 .
#   docker build --target millrace-operator -t millrace-operator:0.1.0 .
#
# Both run as a non-root user on a runtime image with no shell and no package manager. Where base
# images cannot be pulled, replace the stages `builder` and `runtime` with --build-context:
# builder=DIR (the two binaries) and runtime=container-image://LOCAL-IMAGE (buildah 1.28 takes
# a directory for COPY --from only, not for FROM). scripts/build-images.sh does that with
# buildah; docs/OPERATOR.md ("Building the images") shows both ways.

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS compile
WORKDIR /src
COPY . .
# strip: debug info (line tables, and std's and C code's full info) is ~80% of each binary.
# Symbols stay, so backtraces name functions.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p millrace -p millrace-operator \
 && mkdir -p /out \
 && cp target/release/millrace target/release/millrace-operator /out/ \
 && strip --strip-debug /out/millrace /out/millrace-operator

# The binaries alone, at the root: the shape a local directory handed in with
# `--build-context builder=DIR` has too. That context replaces this stage, so `compile` (and the
# rust image) is skipped.
FROM scratch AS builder
COPY --from=compile /out/ /

# glibc, libgcc, CA certificates and /etc/passwd; nothing else. A --build-context named `runtime`
# replaces this stage, and RUNTIME_IMAGE is then never pulled.
FROM ${RUNTIME_IMAGE} AS runtime

FROM runtime AS millrace
COPY --from=builder /millrace /usr/local/bin/millrace
USER 10001:10001
# client listener, replication, controller, HTTP admin (/metrics, /livez, /readyz)
EXPOSE 9092 9091 9093 8080
ENTRYPOINT ["/usr/local/bin/millrace"]
CMD ["serve"]

FROM runtime AS millrace-operator
COPY --from=builder /millrace-operator /usr/local/bin/millrace-operator
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/millrace-operator"]
