#!/usr/bin/env python3
"""coru's bench harness: coru and its peers, side by side, in one run.

A peer is a folder (bench/coru, bench/peers/<name>) of executables:
  build        optional; run once first, exit != 0 skips the peer
  info         optional; one line: runtime and library versions
  w1 VARIANT   W1: N suspend/resume round trips in one coroutine, printing
               RESULT workload=w1 variant=V n=N secs=S ops_per_s=X
               (or UNSUPPORTED workload=w1 variant=V reason=WORD);
               loop = one genuine event-loop iteration per op, sched = the
               scheduler alone
  rpc-server   W2: newline-delimited JSON on HOST:PORT, one coroutine per
               connection; {"name":"patch","req_id":n,...} -> {"name":"ack",
               "req_id":n}; anything else -> a reply that is not an ack (or
               close); prints READY port=P
  idle-server  W3: one coroutine per connection waiting in a line read;
               "hello" -> "ok"; prints READY port=P
Wrappers exec the real program (the harness measures the pid it started).

Every W2 server is driven by the same client, coru's bench/coru/rpc-client,
so server figures compare; W3's idle connections are opened by the harness.
Ratios are coru / peer per round (for instructions and bytes: peer / coru,
so > 1 is coru better everywhere), then the median over rounds.

Env: PEERS (names, default all), WORKLOADS (check,w1,rpc,idle,callgrind),
REPS, N, DURATION, WARMUP, CS (1,50), K, CG_N1/CG_N2, QUICK=1 (small),
SMOKE=1 (coru only, small, exit 1 if coru fails a check or a workload).
Writes bench/results/latest.md and latest.json.
"""
import json, os, resource, signal, socket, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
E = os.environ
SMOKE = E.get("SMOKE") == "1"
QUICK = SMOKE or E.get("QUICK") == "1"
def num(name, full, quick, smoke, conv=float):
    return conv(E.get(name) or (smoke if SMOKE else quick if QUICK else full))
N = num("N", 1000000, 200000, 20000, int)
DURATION = num("DURATION", 2, 0.5, 0.3)
WARMUP = num("WARMUP", 0.3, 0.1, 0.05)
K = num("K", 10000, 2000, 200, int)
REPS = num("REPS", 3, 1, 1, int)
CG_N1, CG_N2 = num("CG_N1", 5000, 2000, 1000, int), num("CG_N2", 25000, 6000, 3000, int)
CS = [int(c) for c in E.get("CS", "1,50").split(",")]
WORKLOADS = E.get("WORKLOADS", "check,w1,rpc,idle,callgrind").split(",")
OUT = os.path.join(HERE, "results")

def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)

class Peer:
    def __init__(self, name, path):
        self.name, self.path, self.skip, self.info = name, path, None, ""
    def entry(self, prog):
        p = os.path.join(self.path, prog)
        return p if os.access(p, os.X_OK) else None

def find_peers():
    peers = [Peer("coru", os.path.join(HERE, "coru"))]
    pdir = os.path.join(HERE, "peers")
    for n in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
        if not n.startswith((".", "_")) and os.path.isdir(os.path.join(pdir, n)):
            peers.append(Peer(n, os.path.join(pdir, n)))
    want = ["coru"] if SMOKE and not E.get("PEERS") else E.get("PEERS", "").split(",") if E.get("PEERS") else None
    return [p for p in peers if want is None or p.name in want]

def penv(**kw):
    env = dict(E, HOST="127.0.0.1", BENCH_ROOT=HERE)
    env.update({k: str(v) for k, v in kw.items()})
    return env

def result_line(out, key):
    for line in out.splitlines():
        if line.startswith(key + " "):
            return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    return None

# ---------------------------------------------------------------- servers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def start_server(peer, prog, errlog):
    port = free_port()
    p = subprocess.Popen([prog], env=penv(PORT=port), stdout=subprocess.PIPE, stderr=errlog, cwd=HERE)
    end = time.time() + 15
    while time.time() < end:
        line = p.stdout.readline().decode()
        if line.startswith("READY"):
            return p, port
        if not line and p.poll() is not None:
            break
    stop(p)
    raise RuntimeError("%s: %s printed no READY" % (peer.name, os.path.basename(prog)))

def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

def cpu_secs(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def status_kb(pid, key):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0

# ------------------------------------------------------------ conformance

def lines_of(sock, n, timeout=3):
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < n:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
    return [json.loads(l) for l in buf.split(b"\n")[:n] if l]

PATCH = "@@ -12,7 +12,7 @@ fn main() {\n-    let x = \"old\";\n+    let x = \"new value\";\n     println!(\"{}\", x);\n"
def req(i):
    return (json.dumps({"name": "patch", "req_id": i, "id": 1, "patch": PATCH}, separators=(",", ":")) + "\n").encode()

def check_rpc(port):
    fails = []
    def conn():
        return socket.create_connection(("127.0.0.1", port), 3)
    def expect(name, ok):
        if not ok:
            fails.append(name)
    with conn() as s:
        s.sendall(req(1))
        r = lines_of(s, 1)
        expect("one request", r and r[0].get("name") == "ack" and r[0].get("req_id") == 1)
        line = req(2)
        s.sendall(line[:40]); time.sleep(0.05); s.sendall(line[40:])
        r = lines_of(s, 1)
        expect("a line split across writes", r and r[0].get("req_id") == 2)
        s.sendall(req(3) + req(4) + req(5))
        r = lines_of(s, 3)
        expect("pipelined lines, replies in order", [x.get("req_id") for x in r] == [3, 4, 5])
        s.sendall(b'{"name":"patch","req_id":6,"id":1,"patch":"\\u00e9\\n\\"x\\"","extra":[1,{"a":null}]}\n')
        r = lines_of(s, 1)
        expect("escapes and extra keys", r and r[0].get("req_id") == 6)
    with conn() as s:
        s.sendall(b"not json\n")
        s.settimeout(3)
        try:
            d = s.recv(4096)
            expect("invalid JSON gets no ack", not d or json.loads(d.split(b"\n")[0]).get("name") != "ack")
        except (socket.timeout, ValueError):
            fails.append("invalid JSON: no reply and no close")
    with conn() as s:
        s.sendall(req(7)[:30])        # EOF mid-line
    socks = [conn() for _ in range(20)]
    for i, s in enumerate(socks):
        s.sendall(req(100 + i))
    ok = all((lambda r: r and r[0].get("req_id") == 100 + i)(lines_of(s, 1)) for i, s in enumerate(socks))
    expect("20 concurrent connections (the server survived the above)", ok)
    for s in socks:
        s.close()
    return fails

def check_idle(port):
    with socket.create_connection(("127.0.0.1", port), 3) as s:
        s.sendall(b"hello\n")
        s.settimeout(3)
        return [] if s.recv(16).startswith(b"ok\n") else ["hello -> ok"]

# -------------------------------------------------------------- workloads

def run(cmd, env, timeout=300):
    return subprocess.run(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout).stdout.decode()

def w1(peer, variant):
    prog = peer.entry("w1")
    if not prog:
        return None
    r = result_line(run([prog, variant], penv(N=N)), "RESULT")
    return float(r["ops_per_s"]) if r else None

def callgrind(peer, variant):
    prog = peer.entry("w1")
    if not prog:
        return None
    def instr(n):
        p = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes", "--callgrind-out-file=/dev/null", prog, variant],
                           env=penv(N=n), cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        if "UNSUPPORTED" in p.stdout.decode():
            return None
        for line in p.stderr.decode().splitlines():
            if "Collected :" in line:
                return int(line.split(":")[-1])
        return None
    a, b = instr(CG_N1), instr(CG_N2)
    return (b - a) / (CG_N2 - CG_N1) if a and b else None

CLIENT = os.path.join(HERE, "coru", "rpc-client")

def rpc(peer, c, errlog):
    prog = peer.entry("rpc-server")
    if not prog:
        return None
    p, port = start_server(peer, prog, errlog)
    try:
        c0 = cpu_secs(p.pid)
        out = run([CLIENT], penv(PORT=port, C=c, DURATION=DURATION, WARMUP=WARMUP), 60 + DURATION)
        c1 = cpu_secs(p.pid)
        r = result_line(out, "RESULT")
        if not r or int(r["errors"]) != 0 or int(r["total"]) == 0:
            raise RuntimeError("%s: rpc client failed: %r" % (peer.name, out[-300:]))
        return {"req_per_s": float(r["req_per_s"]), "srv_us_per_req": (c1 - c0) / int(r["total"]) * 1e6,
                "peak_kb": status_kb(p.pid, "VmHWM")}
    finally:
        stop(p)

def idle(peer, errlog):
    prog = peer.entry("idle-server")
    if not prog:
        return None
    p, port = start_server(peer, prog, errlog)
    socks = []
    try:
        time.sleep(0.3)
        rss0 = status_kb(p.pid, "VmRSS")
        t0 = time.time()
        for base in range(0, K, 200):              # at most 200 handshakes in flight
            batch = [socket.create_connection(("127.0.0.1", port), 10) for _ in range(min(200, K - base))]
            for s in batch:
                s.sendall(b"hello\n")
            for s in batch:
                s.settimeout(10)
                if not s.recv(16).startswith(b"ok"):
                    raise RuntimeError("%s: idle connection not answered" % peer.name)
            socks += batch
        setup = time.time() - t0
        time.sleep(0.5)
        rss1 = status_kb(p.pid, "VmRSS")
        return {"bytes_per_conn": (rss1 - rss0) * 1024 / K, "setup_s": setup}
    finally:
        for s in socks:
            s.close()
        stop(p)

# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return "%.2fM" % (v / 1e6)
    if v >= 1e4:
        return "%.1fk" % (v / 1e3)
    return "%.1f" % v if v < 100 else "%.0f" % v

ROWS = [  # key, label, higher is better
    ("w1.loop", "W1 loop round trip, ops/s", True),
    ("w1.sched", "W1 sched round trip, ops/s", True),
    ("cg.loop", "W1 loop, instructions/op", False),
    ("cg.sched", "W1 sched, instructions/op", False),
] + [(k % c, l % c, h) for c in CS for (k, l, h) in [
    ("rpc.c%d.req_per_s", "W2 rpc C=%d, req/s (coru's client)", True),
    ("rpc.c%d.srv_us_per_req", "W2 C=%d server CPU µs/request", False),
    ("rpc.c%d.peak_kb", "W2 C=%d server peak RSS, kB", False)]] + [
    ("idle.bytes_per_conn", "W3 bytes per idle connection (K=%d)" % K, False),
]

def main():
    try:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    os.makedirs(OUT, exist_ok=True)
    errlog = open(os.path.join(OUT, "server-stderr.log"), "wb")
    peers = find_peers()
    for p in peers:
        b = p.entry("build")
        if b:
            r = subprocess.run([b], env=penv(), cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode != 0:
                p.skip = (r.stderr.decode().strip().splitlines() or ["build failed"])[-1]
                log("skip", p.name + ":", p.skip)
                continue
        i = p.entry("info")
        p.info = run([i], penv()).strip().splitlines()[0] if i else ""
    peers = [p for p in peers if not p.skip] + [p for p in peers if p.skip]
    live = [p for p in peers if not p.skip]
    data = {p.name: {} for p in peers}   # peer -> key -> [per round]
    problems = []
    def put(p, key, v):
        data[p.name].setdefault(key, []).append(v)
    if "check" in WORKLOADS:
        for p in live:
            for prog, chk in (("rpc-server", check_rpc), ("idle-server", check_idle)):
                if p.entry(prog):
                    try:
                        srv, port = start_server(p, p.entry(prog), errlog)
                        try:
                            fails = chk(port)
                        finally:
                            stop(srv)
                    except Exception as e:
                        fails = [str(e)]
                    log("check", p.name, prog, "pass" if not fails else "FAIL: " + "; ".join(fails))
                    if fails:
                        problems.append("%s %s: %s" % (p.name, prog, "; ".join(fails)))
    for rnd in range(REPS):
        order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
        for p in order:
            try:
                if "w1" in WORKLOADS:
                    for v in ("loop", "sched"):
                        x = w1(p, v)
                        put(p, "w1." + v, x)
                        log("w1", v, p.name, fmt(x))
                if "rpc" in WORKLOADS:
                    for c in CS:
                        r = rpc(p, c, errlog)
                        for k in ("req_per_s", "srv_us_per_req", "peak_kb"):
                            put(p, "rpc.c%d.%s" % (c, k), r and r[k])
                        log("rpc c=%d" % c, p.name, r and "%s req/s, %.1f us/req srv" % (fmt(r["req_per_s"]), r["srv_us_per_req"]))
                if "idle" in WORKLOADS:
                    r = idle(p, errlog)
                    put(p, "idle.bytes_per_conn", r and r["bytes_per_conn"])
                    log("idle", p.name, r and "%.0f B/conn" % r["bytes_per_conn"])
            except Exception as e:
                problems.append("%s: %s" % (p.name, e))
                log("FAIL", p.name, e)
    if "callgrind" in WORKLOADS and subprocess.run(["sh", "-c", "command -v valgrind"], stdout=subprocess.DEVNULL).returncode == 0:
        for p in (live if not QUICK else [x for x in live if x.name == "coru"]):
            for v in ("loop", "sched"):
                x = callgrind(p, v)
                put(p, "cg." + v, x)
                log("callgrind", v, p.name, fmt(x))
    # report
    names = [p.name for p in peers]
    lines = ["# coru bench: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "",
             "%d round(s); N=%d, DURATION=%gs, CS=%s, K=%d; load at start %s; %d cores." % (
                 REPS, N, DURATION, ",".join(map(str, CS)), K, " ".join(open("/proc/loadavg").read().split()[:3]),
                 os.cpu_count()), "",
             "Cells: median over rounds; for a peer, in brackets, the median of the per-round ratios",
             "coru/peer (throughput) or peer/coru (instructions, CPU, memory): above 1 means coru is better.", "",
             "| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label, higher in ROWS:
        if not any(data[n].get(key) for n in names):
            continue
        cells = []
        cv = data["coru"].get(key, []) if "coru" in data else []
        for n in names:
            v = data[n].get(key, [])
            cell = fmt(med(v))
            if n != "coru" and v and cv:
                rs = [(a / b if higher else b / a) for a, b in zip(cv, v) if a and b]
                if rs:
                    cell += " (%.2fx)" % statistics.median(rs)
            cells.append(cell)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines += ["", "Peers:"] + ["- `%s`: %s" % (p.name, p.skip and "skipped: " + p.skip or p.info or "-") for p in peers]
    if problems:
        lines += ["", "Problems:"] + ["- " + x for x in problems]
    report = "\n".join(lines) + "\n"
    open(os.path.join(OUT, "latest.md"), "w").write(report)
    json.dump({"data": data, "peers": {p.name: {"info": p.info, "skip": p.skip} for p in peers},
               "params": {"N": N, "DURATION": DURATION, "CS": CS, "K": K, "REPS": REPS}, "problems": problems},
              open(os.path.join(OUT, "latest.json"), "w"), indent=1)
    print(report)
    if SMOKE:
        coru = data.get("coru", {})
        missing = [k for k in ("w1.loop", "w1.sched") if not med(coru.get(k, []))]
        if any(p.name == "coru" and p.skip for p in peers):
            missing.append("coru's build")
        if problems or missing:
            print("SMOKE: FAILED", problems, missing, file=sys.stderr)
            return 1
        print("SMOKE: coru entry points OK")
    return 0

if __name__ == "__main__":
    sys.exit(main())
