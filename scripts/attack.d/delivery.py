"""scripts/attack's delivery kinds: floods of unsigned hooks aimed at the
delivery queue and its relay workers, each printing what a genuine signed
GitHub push meets during and after it (reply status and latency, and how
long until its notification reached its fluxd).

  queue-flood   1,024 distinct Docker Hub posts (unsigned) while their fluxd
                is down, then four unsigned Bitbucket Cloud deliveries of 256
                branches (7.4 KB each); genuine pushes go to another endpoint
                and a healthy fluxd. Bound: every genuine push 200.
  queue-order   one fluxd for everything, answering after 50 ms; Docker Hub
                posts at 500/s, fire and forget. Bound: every genuine push
                200 (not queued behind the flood).
  slow-api      a fluxd answering after 4.5 s, fed 20 unsigned posts a second;
                genuine pushes to a healthy fluxd. Bound: every one 200.
  retry-after   fluxd answers 503 and 429 with `Retry-After: 10` for 20 s while
                unsigned posts arrive; then it accepts. Bound: POSTs at most
                one probe per Retry-After (plus the first attempts), and every
                notification delivered within Retry-After + 5 s of its return.
  fan-out       an endpoint with 200 APIs; 12 unsigned Bitbucket Cloud
                deliveries of 256 branches at once. Bound: each answered 400
                (not a retryable 503), peak RSS grows by less than 8 MiB, and
                a genuine push to another endpoint gets 200.
  refusal-logs  fluxd answers 404; unsigned posts for 5 s as fast as 16
                clients go. Bound: the queue's lines about single
                notifications stay within --refusal-logs-per-second (20) a
                second, plus one summary a second.

Each kind starts its own flux-recv and stand-in fluxds on 127.0.0.1.
Standard library only.
"""

import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from fluxrecv import die, mib, proc_status_kib, push_body, push_headers  # noqa: E402

KINDS = ["queue-flood", "queue-order", "slow-api", "retry-after", "fan-out", "refusal-logs"]

GITHUB_KEY = b"attack-github-0123456789abcdef0123456789"
DOCKER_HUB_KEY = b"attack-dockerhub-0123456789abcdef01234"
BITBUCKET_KEY = b"attack-bitbucket-0123456789abcdef01234"
NOTIFY = "/api/flux/v11/notify"

# The reply budget (flux-recv's default): a push fluxd accepted within it is 200.
BUDGET = 2.0


def hook(key):
    return "/hook/" + hashlib.sha256(key).hexdigest()


# ------------------------------------------------------------ stand-in fluxd


class Fluxd:
    """A stand-in fluxd on 127.0.0.1: `answer(body)` gives (status, headers,
    delay in seconds). Records when each notification arrived."""

    def __init__(self, answer=lambda body: (202, {}, 0)):
        self.answer = answer
        self.lock = threading.Lock()
        self.posts = 0
        self.arrived = {}  # body -> first arrival (monotonic)
        self.per_body = {}  # body -> POSTs
        fluxd = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic()
                with fluxd.lock:
                    fluxd.posts += 1
                    fluxd.per_body[body] = fluxd.per_body.get(body, 0) + 1
                status, headers, delay = fluxd.answer(body)
                if delay:
                    time.sleep(delay)
                if 200 <= status < 300:
                    with fluxd.lock:
                        fluxd.arrived.setdefault(body, now)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                pass  # flux-recv closing its keep-alive connections

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.api = f"http://127.0.0.1:{self.port}/api/flux"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, body):
        with self.lock:
            return self.arrived.get(body)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def dead_api():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/api/flux"


# ------------------------------------------------------------ flux-recv


class Recv:
    """flux-recv on 127.0.0.1 with `endpoints` (a list of (source, key,
    api or list of apis)); its stderr lines and bytes counted."""

    def __init__(self, binary, tmp, endpoints, extra=()):
        lines = ["fluxRecvVersion: 1", "endpoints:"]
        for i, (source, key, api) in enumerate(endpoints):
            with open(os.path.join(tmp, f"{i}.key"), "wb") as f:
                f.write(key)
            apis = api if isinstance(api, list) else [api]
            lines += [f"- source: {source}", f"  keyPath: {i}.key", "  api:"]
            lines += [f"  - {a}" for a in apis]
        config = os.path.join(tmp, "fluxrecv.yaml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "--config", config, "--listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self.lines, self.bytes, self.addr = [], 0, None
        ready = threading.Event()

        def drain():
            for raw in self.proc.stderr:
                self.bytes += len(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                if self.addr is None and "listening" in line and "address: " in line:
                    host, port = line.split("address: ")[1].split(",")[0].rsplit(":", 1)
                    self.addr = (host, int(port))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(20) or self.addr is None:
            self.stop()
            die("flux-recv did not start:\n" + "\n".join(self.lines[-20:]))

    def rss(self):
        return proc_status_kib(self.proc.pid, "VmRSS")

    def peak(self):
        return proc_status_kib(self.proc.pid, "VmHWM")

    def count(self, needle):
        return sum(1 for line in list(self.lines) if needle in line)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def post(addr, path, body, headers, timeout=60):
    """(status, seconds, Retry-After) of one POST on a new connection."""
    started = time.monotonic()
    try:
        c = http.client.HTTPConnection(*addr, timeout=timeout)
        c.request("POST", path, body, headers)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, time.monotonic() - started, r.getheader("Retry-After")
    except OSError as e:
        return f"error ({e.__class__.__name__})", time.monotonic() - started, None


def fire_and_forget(addr, path, body, headers):
    """Send a POST and hang up without reading the reply."""
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    try:
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(head.encode() + body)
    except OSError:
        pass


def docker_hub(i, tag="flood"):
    return json.dumps({"repository": {"repo_name": f"{tag}/image-{i}"}}).encode()


JSON = {"Content-Type": "application/json"}
BITBUCKET = {"Content-Type": "application/json", "X-Event-Key": "repo:push"}


def bitbucket(n, tag):
    changes = [{"new": {"name": f"{tag}-{i:03}"}} for i in range(n)]
    return json.dumps({"repository": {"full_name": "org/app"},
                       "push": {"changes": changes}}, separators=(",", ":")).encode()


class Genuine:
    """Signed GitHub pushes, each of a distinct branch; what each met."""

    branches = 0  # across every run, so that no two pushes are alike

    def __init__(self, recv, fluxd):
        self.recv, self.fluxd, self.n, self.results = recv, fluxd, 0, []

    def push(self, phase):
        self.n += 1
        Genuine.branches += 1
        branch = f"genuine-{Genuine.branches}"
        body = push_body(branch, "git@github.com:org/app.git")
        headers = {**push_headers(GITHUB_KEY, body), "X-GitHub-Delivery": branch}
        sent = time.monotonic()
        status, took, _ = post(self.recv.addr, hook(GITHUB_KEY), body, headers)
        notification = json.dumps({"Kind": "git", "Source": {
            "URL": "git@github.com:org/app.git", "Branch": branch}},
            separators=(",", ":")).encode()
        self.results.append((phase, status, took, sent, notification))

    def report(self, wait=10):
        """Print, per phase, statuses, latency and delivery delay; True when
        every push was 200."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(
                self.fluxd.delivered(n) is None for *_, n in self.results):
            time.sleep(0.05)
        ok = True
        for phase in dict.fromkeys(p for p, *_ in self.results):
            rows = [r for r in self.results if r[0] == phase]
            statuses = {}
            for _, s, *_ in rows:
                statuses[s] = statuses.get(s, 0) + 1
            took = sorted(t for _, _, t, _, _ in rows)
            delays = [self.fluxd.delivered(n) - sent for *_, sent, n in rows
                      if self.fluxd.delivered(n) is not None]
            lost = len(rows) - len(delays)
            print(f"  genuine pushes {phase}: "
                  + ", ".join(f"{c} x {s}" for s, c in statuses.items())
                  + f"; reply p50 {statistics.median(took) * 1000:.0f} ms,"
                  f" max {took[-1] * 1000:.0f} ms; delivered within"
                  f" {max(delays) * 1000 if delays else float('nan'):.0f} ms (max)"
                  + (f"; {lost} not delivered" if lost else ""))
            ok &= all(s == 200 for _, s, *_ in rows) and lost == 0
        return ok


def verdict(ok, bound):
    print(f"  {'PASS' if ok else 'FAIL'} {bound}")
    return ok


# ------------------------------------------------------------ the kinds


def queue_flood(binary, tmp):
    print("== queue-flood: 1,024 distinct Docker Hub posts (unsigned) to a fluxd that is down;"
          " signed GitHub pushes to another endpoint and a healthy fluxd")
    up = Fluxd()
    recv = Recv(binary, tmp, [("DockerHub", DOCKER_HUB_KEY, dead_api()),
                              ("GitHub", GITHUB_KEY, up.api)])
    genuine = Genuine(recv, up)
    statuses = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        flood = [pool.submit(post, recv.addr, hook(DOCKER_HUB_KEY), docker_hub(i), JSON)
                 for i in range(1024)]
        # Spread over the flood (each queued post waits out the reply budget).
        while not all(f.done() for f in flood) and genuine.n < 14:
            time.sleep(0.5)
            genuine.push("during")
        for f in flood:
            s = f.result()[0]
            statuses[s] = statuses.get(s, 0) + 1
    print("  Docker Hub flood: " + ", ".join(f"{c} x {s}" for s, c in sorted(statuses.items(), key=str)))
    for _ in range(7):
        genuine.push("after")
    ok = genuine.report()
    recv.stop()

    recv = Recv(binary, tmp, [("BitbucketCloud", BITBUCKET_KEY, dead_api()),
                              ("GitHub", GITHUB_KEY, up.api)])
    genuine = Genuine(recv, up)
    body = bitbucket(256, "branch")
    results = []
    for i in range(4):
        results.append(post(recv.addr, hook(BITBUCKET_KEY), bitbucket(256, f"b{i}"), BITBUCKET)[0])
        genuine.push("during")
    print(f"  Bitbucket Cloud: 4 deliveries of 256 branches ({len(body) / 1024:.1f} KiB): {results}")
    for _ in range(7):
        genuine.push("after")
    ok &= genuine.report()
    recv.stop()
    up.stop()
    return verdict(ok, "every genuine push 200, delivered within the reply budget")


def queue_order(binary, tmp):
    print("== queue-order: one fluxd answering after 50 ms; Docker Hub posts at 500/s, fire and"
          " forget; genuine pushes to another endpoint, same fluxd")
    fluxd = Fluxd(lambda body: (202, {}, 0.05))
    recv = Recv(binary, tmp, [("DockerHub", DOCKER_HUB_KEY, fluxd.api),
                              ("GitHub", GITHUB_KEY, fluxd.api)])
    genuine = Genuine(recv, fluxd)
    stop = threading.Event()
    sent = [0]

    def flood(offset, rate):
        i, started = 0, time.monotonic()
        while not stop.is_set():
            fire_and_forget(recv.addr, hook(DOCKER_HUB_KEY), docker_hub(offset + i), JSON)
            i += 1
            sent[0] += 1
            time.sleep(max(0.0, started + i / rate - time.monotonic()))

    threads = [threading.Thread(target=flood, args=(k * 1_000_000, 100), daemon=True)
               for k in range(5)]
    for t in threads:
        t.start()
    time.sleep(3)
    for _ in range(14):
        genuine.push("during")
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    print(f"  flood: {sent[0]} posts; fluxd took {len(fluxd.arrived)} notifications")
    for _ in range(7):
        genuine.push("after")
    ok = genuine.report()
    recv.stop()
    fluxd.stop()
    return verdict(ok, "every genuine push 200, delivered within the reply budget")


def slow_api(binary, tmp):
    print("== slow-api: a fluxd answering after 4.5 s fed 20 unsigned posts a second;"
          " genuine pushes to a healthy fluxd")
    slow = Fluxd(lambda body: (202, {}, 4.5))
    up = Fluxd()
    recv = Recv(binary, tmp, [("DockerHub", DOCKER_HUB_KEY, slow.api),
                              ("GitHub", GITHUB_KEY, up.api)])
    genuine = Genuine(recv, up)
    stop = threading.Event()

    def flood():
        i, started = 0, time.monotonic()
        while not stop.is_set():
            fire_and_forget(recv.addr, hook(DOCKER_HUB_KEY), docker_hub(i), JSON)
            i += 1
            time.sleep(max(0.0, started + i / 20 - time.monotonic()))

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    time.sleep(5)
    for _ in range(14):
        genuine.push("during")
        time.sleep(0.5)
    stop.set()
    t.join()
    for _ in range(7):
        genuine.push("after")
    ok = genuine.report()
    recv.stop()
    slow.stop()
    up.stop()
    return verdict(ok, "every genuine push 200, delivered within the reply budget")


def retry_after(binary, tmp, wait=10, hold=20):
    print(f"== retry-after: fluxd answers 503 and 429 with Retry-After: {wait} for {hold} s"
          " while unsigned posts arrive, then accepts")
    state = {"up": False, "n": 0}

    def answer(body):
        if state["up"]:
            return 202, {}, 0
        state["n"] += 1
        return (503 if state["n"] % 2 else 429), {"Retry-After": str(wait)}, 0

    fluxd = Fluxd(answer)
    recv = Recv(binary, tmp, [("DockerHub", DOCKER_HUB_KEY, fluxd.api),
                              ("GitHub", GITHUB_KEY, fluxd.api)])
    genuine = Genuine(recv, fluxd)
    sent = 0
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        while time.monotonic() - started < hold:
            futures = [pool.submit(post, recv.addr, hook(DOCKER_HUB_KEY), docker_hub(sent + i), JSON)
                       for i in range(50)]
            sent += len(futures)
            genuine.push("during")
            for f in futures:
                f.result()
            time.sleep(1)
    posts = fluxd.posts
    per = sorted(fluxd.per_body.values())
    print(f"  {sent} distinct posts over {hold} s: fluxd got {posts} POSTs"
          f" ({posts / max(1, len(per)):.2f} per notification tried,"
          f" {len(per)} of {sent + genuine.n} tried at all)")
    state["up"] = True
    back = time.monotonic()
    # Every notification the flood and the genuine pushes made.
    want = sent + genuine.n
    while len(fluxd.arrived) < want and time.monotonic() - back < wait + 30:
        time.sleep(0.1)
    took = time.monotonic() - back
    print(f"  fluxd back: {len(fluxd.arrived)} of {want} notifications delivered,"
          f" the last {took:.1f} s after its return")
    genuine.push("after")
    genuine.report(wait + 10)
    # Pending (202) while fluxd asked to wait: 2xx, and delivered after.
    ok = all(s in (200, 202) for _, s, *_ in genuine.results)
    ok &= all(fluxd.delivered(n) is not None for *_, n in genuine.results)
    probes = hold / wait + 4
    ok_posts = posts <= probes
    ok_after = len(fluxd.arrived) >= want and took <= wait + 5
    recv.stop()
    fluxd.stop()
    verdict(ok, "genuine pushes 2xx throughout, and delivered")
    verdict(ok_posts, f"at most {probes:.0f} POSTs while fluxd asked to wait")
    verdict(ok_after, f"every notification delivered within {wait + 5} s of fluxd's return")
    return ok and ok_posts and ok_after


def fan_out(binary, tmp):
    print("== fan-out: an endpoint with 200 APIs; 12 unsigned Bitbucket Cloud deliveries of"
          " 256 branches at once; a genuine push to another endpoint")
    up = Fluxd()
    down = dead_api().rsplit("/api/flux", 1)[0]
    apis = [f"{down}/team-{i}/api/flux" for i in range(200)]
    recv = Recv(binary, tmp, [("BitbucketCloud", BITBUCKET_KEY, apis),
                              ("GitHub", GITHUB_KEY, up.api)])
    genuine = Genuine(recv, up)
    time.sleep(0.5)
    before, peak_before = recv.rss(), recv.peak()
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(
            lambda i: post(recv.addr, hook(BITBUCKET_KEY), bitbucket(256, f"f{i}"), BITBUCKET),
            range(12)))
    time.sleep(0.5)
    after, peak = recv.rss(), recv.peak()
    statuses = {}
    for s, _, _ in results:
        statuses[s] = statuses.get(s, 0) + 1
    print("  deliveries: " + ", ".join(f"{c} x {s}" for s, c in statuses.items())
          + f" (Retry-After: {sorted({str(r) for *_, r in results})});"
          f" RSS {mib(before)} -> {mib(after)}, peak (VmHWM) {mib(peak_before)} -> {mib(peak)}")
    for _ in range(3):
        genuine.push("after")
    ok = genuine.report()
    recv.stop()
    up.stop()
    ok_reply = all(s == 400 and r is None for s, _, r in results)
    ok_rss = peak - peak_before < 8 * 1024
    verdict(ok_reply, "every such delivery 400, not a retryable 503")
    verdict(ok_rss, "peak RSS grew by less than 8 MiB")
    verdict(ok, "genuine pushes 200")
    return ok and ok_reply and ok_rss


def refusal_logs(binary, tmp, seconds=5, budget=20):
    print(f"== refusal-logs: fluxd answers 404; unsigned posts for {seconds} s from 16 clients")
    fluxd = Fluxd(lambda body: (404, {}, 0))
    recv = Recv(binary, tmp, [("DockerHub", DOCKER_HUB_KEY, fluxd.api),
                              ("GitHub", GITHUB_KEY, fluxd.api)])
    lines_before, bytes_before = len(recv.lines), recv.bytes
    stop = threading.Event()
    sent = [0] * 16

    def client(k):
        i = 0
        while not stop.is_set():
            post(recv.addr, hook(DOCKER_HUB_KEY), docker_hub(k * 1_000_000 + i), JSON)
            i += 1
            sent[k] += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    time.sleep(2)  # the last summary, a second after the flood
    refused_lines = recv.count("fluxd refused a notification")
    summaries = recv.count("notification lines not logged")
    hook_lines = recv.count("hook refused")
    total = len(recv.lines) - lines_before
    size = recv.bytes - bytes_before
    recv.stop()
    fluxd.stop()
    print(f"  {sum(sent)} posts, {fluxd.posts} POSTs to fluxd: {refused_lines} 'fluxd refused a"
          f" notification' lines, {summaries} summaries; {hook_lines} 'hook refused' lines;"
          f" stderr {total} lines, {size / 1024:.0f} KiB")
    bound = budget * (int(took) + 2)
    return verdict(refused_lines <= bound and summaries <= int(took) + 3,
                   f"the queue's lines within {budget}/s ({bound}), one summary a second")


def run(kind, binary):
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "queue-flood": queue_flood,
            "queue-order": queue_order,
            "slow-api": slow_api,
            "retry-after": retry_after,
            "fan-out": fan_out,
            "refusal-logs": refusal_logs,
        }[kind](binary, tmp)
