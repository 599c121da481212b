# seekmesh: one image for every service, chosen by the command:
#
#   podman build --format docker -t seekmesh .        (or: docker build -t seekmesh .)
#   docker run --rm seekmesh help
#   docker run ... seekmesh router                      ingress | router | connector | cache | audit | mock | redis | ctl
#
# Built on Debian 12, run on a slim Debian 12 base: debian:12-slim from a
# registry, or, without one, the image scripts/base-image makes with
# debootstrap (--build-arg BASE_IMAGE=localhost/seekmesh-base:bookworm).
# The service runs as an unprivileged user and writes only to what is
# mounted at /var/lib/seekmesh/audit and /var/lib/seekmesh/redis (compose's
# volumes; no VOLUME here, which would give every other service an anonymous
# one), so the root file system can be read-only.  Docker secrets named like environment variables
# (/run/secrets/SEEKMESH_UPSTREAM_API_KEY) become those variables for the service
# (deploy/image/seekmesh).  HEALTHCHECK asks /healthz on the service's
# admin port (deploy/image/seekmesh-healthcheck); podman keeps it only in
# the docker image format (--format docker).
ARG BASE_IMAGE=debian:12-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config libzmq3-dev libczmq-dev libwebsockets-dev libmsgpack-dev \
        libhiredis-dev libjansson-dev libssl-dev libev-dev libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common/ common/
COPY proto/ proto/
COPY services/ services/
ARG MAKE_JOBS=2
# The binaries, then the list of Debian packages that hold the libraries they
# link, for the run stage to install: it follows the code, not a kept copy
RUN make -j"${MAKE_JOBS}" WERROR=1 OPT="-O2 -g" \
        build/bin/seekmesh-ingress build/bin/seekmesh-router build/bin/seekmesh-connector \
        build/bin/seekmesh-cache build/bin/seekmesh-audit build/bin/seekmesh-mock build/bin/seekmeshctl \
 && mkdir -p /out/bin \
 && for b in build/bin/seekmesh-* build/bin/seekmeshctl; do \
        strip --strip-debug -o "/out/bin/${b##*/}" "$b"; done \
 && for b in /out/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// { print $3 }' | sort -u \
    | while read -r lib; do dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"; done \
    | cut -d: -f1 | sort -u > /out/runtime-packages \
 && test -s /out/runtime-packages

FROM ${BASE_IMAGE}
COPY --from=build /out/runtime-packages /tmp/runtime-packages
# Besides what the binaries link: libwebsockets' libev glue, which it loads
# itself (dlopen); CA certificates for https upstreams; jq for the
# healthcheck; Redis for the mesh's Redis container
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $(cat /tmp/runtime-packages) libwebsockets-evlib-ev ca-certificates jq redis-server \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && groupadd --system --gid 10001 seekmesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/seekmesh --no-create-home \
        --shell /usr/sbin/nologin seekmesh \
 && mkdir -p /var/lib/seekmesh/audit /var/lib/seekmesh/redis /etc/seekmesh \
 && chown -R seekmesh:seekmesh /var/lib/seekmesh \
 && chmod 0750 /var/lib/seekmesh/audit /var/lib/seekmesh/redis
COPY --from=build /out/bin/ /usr/local/bin/
COPY deploy/image/seekmesh deploy/image/seekmesh-healthcheck /usr/local/bin/
COPY compose/config/ /etc/seekmesh/
ENV SEEKMESH_CONFIG=/etc/seekmesh/container.json
USER 10001:10001
WORKDIR /var/lib/seekmesh
# The client API (the ingress).  The others stay inside the mesh's network:
# admin ports 9080 ingress .. 9084 audit (9083 cache, 9109 mock), ZeroMQ 5555
# router, 5556 router <-> connector, 5557 cache, 5558 audit, 5559 ingress replies, Redis 6379,
# the mock upstream 9100
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/seekmesh-healthcheck"]
ENTRYPOINT ["/usr/local/bin/seekmesh"]
CMD ["help"]
