# Sourced by the benchmarks: a free loopback port and a docker-registry on it.

# A free loopback port (bound, then released for the registry to take).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry DATA_DIR PORT LOG: starts docker-registry on 127.0.0.1:PORT,
# storing under DATA_DIR (its config beside it, DATA_DIR.yml), logging to LOG;
# sets REGISTRY_PID at once (so a caller can always stop it) and returns when
# the registry answers, or fails saying why.
start_registry() {
    local data=$1 port=$2 log=$3
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n  secret: bench\n' "$data" "$port" >"$data.yml"
    docker-registry serve "$data.yml" >>"$log" 2>&1 &
    REGISTRY_PID=$!
    for _ in $(seq 100); do
        curl -s -m 1 -o /dev/null "http://127.0.0.1:$port/v2/" && return 0
        if ! kill -0 "$REGISTRY_PID" 2>/dev/null; then
            echo "docker-registry exited: $(cat "$log")" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "docker-registry did not answer on 127.0.0.1:$port" >&2
    return 1
}
