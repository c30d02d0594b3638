# service.Dockerfile: one image per service (docker build --build-arg SERVICE=catalog -f deploy/docker/service.Dockerfile .).
#
# Every service builds from this file; a new service only adds a compose entry
# with its own SERVICE build argument. Stage 1 compiles shop-$SERVICE and
# shopctl with the Debian -dev packages; stage 2 carries only the shared
# libraries, runs as an unprivileged user and checks /healthz with bash's
# /dev/tcp, so the runtime image needs no curl (one package and its TLS stack
# fewer to patch).

ARG DEBIAN=bookworm-slim

FROM debian:${DEBIAN} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<name>" >&2; exit 1; }
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
        libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libevent-dev libpq-dev libjansson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY proto proto
COPY common common
COPY services services
COPY tools tools
COPY tests tests
COPY bench bench
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target "shop-${SERVICE}" shopctl \
 && install -D -m 0755 "/build/bin/shop-${SERVICE}" /out/shop-service \
 && install -D -m 0755 /build/bin/shopctl /out/shopctl

FROM debian:${DEBIAN}
ARG SERVICE
# Runtime libraries only; upgrade picks up Debian security fixes (e.g. libevent's evhttp).
RUN apt-get update \
 && apt-get upgrade -y \
 && apt-get install -y --no-install-recommends \
        libzmq5 libprotobuf-c1 libevent-2.1-7 libevent-pthreads-2.1-7 libpq5 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shop
COPY --from=build /out/shop-service /usr/local/bin/shop-${SERVICE}
COPY --from=build /out/shopctl /usr/local/bin/shopctl
RUN ln -s "/usr/local/bin/shop-${SERVICE}" /usr/local/bin/shop-service
USER shop
# GNUTLS_NO_IMPLICIT_INIT: see the README (the service would otherwise set it
# and start itself again)
ENV GNUTLS_NO_IMPLICIT_INIT=1 \
    SHOP_RPC_BIND=tcp://0.0.0.0:7000 \
    SHOP_PUB_BIND=tcp://0.0.0.0:7001 \
    SHOP_ADMIN_ADDR=0.0.0.0 \
    SHOP_ADMIN_PORT=8080
EXPOSE 7000 7001 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SHOP_ADMIN_PORT} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 line <&3 && [[ $line == HTTP/1.?' 200'* ]]"]
ENTRYPOINT ["/usr/local/bin/shop-service"]
