#!/usr/bin/env python3
"""Live-migration benchmark, vmm and QEMU side by side in one run.

For idle and busy 1 GiB guests over a UNIX socket and loopback TCP:
  - vmm: total time, the VMM's measured pause (pause -> destination ACK),
    throughput of the best pass, and for the busy guest the guest-visible
    downtime (memtest's max_gap_us: the longest jump in its own TSC clock);
  - QEMU 7.2: the same guest (`-incoming`, QMP `migrate` with the same
    downtime limit), its reported downtime and total time, and the memtest gap;
  - the physical limit: a plain socket copy of the same 1 GiB over the same
    transport, from one backed buffer into another (what a destination
    with --prefault writes into) and, with pwrite() as the destination
    does, into a fresh memfd after the host has had time to reclaim what was
    freed (what a destination writes into by default; on this host that
    costs far more than the copy itself).
Throughput: a paused guest full of non-zero pages, one pass, 1 and 2
connections, into fresh and prefaulted destination RAM, each against its
limit; QEMU with the same paused guest.
Live update (vmm only): downtime at 1 and 4 GiB.
--sections picks a subset (downtime, throughput, live-update).

Idle = the `irq` scenario (waits for timer ticks in hlt; RAM stays zero);
busy = `memtest` on 2 vCPUs (every page rewritten pass after pass).
Guests run emulated on this host (see shared/ENVIRONMENT.md), so the busy
guest's dirty rate is far below what it would be on hardware KVM.
Writes JSON and prints a table."""
import argparse, json, mmap, os, re, shutil, socket, subprocess, sys, tempfile, threading, time

QEMU_BASE = ["-M", "microvm,x-option-roms=off,rtc=off,isa-serial=on", "-accel", "kvm",
             "-cpu", "host,-arch-capabilities", "-nodefaults", "-no-reboot", "-display", "none",
             "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
GIB = 1 << 30
DOWNTIME_MS = 50
QEMU_MAX_BANDWIDTH = 100 * GIB  # bytes/s: no throttle in practice


def log(*a):
    print("bench-migrate:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ socket limit

def filled_memfd(nbytes, fill):
    """A mapping of a new memfd of @nbytes: every page written with @fill
    (so it is backed), or (fill None) untouched."""
    fd = os.memfd_create("bench-buf")
    os.ftruncate(fd, nbytes)
    m = mmap.mmap(fd, nbytes)
    os.close(fd)
    if fill is not None:
        block = bytes([fill]) * (1 << 20)
        for off in range(0, nbytes, 1 << 20):
            m[off:off + (1 << 20)] = block
    return m


def socket_copy(kind, nbytes, port, fresh=False, settle_s=0, bare=False):
    """Seconds to push @nbytes of RAM through one stream socket, as a
    migration must: the sender reads them from a backed buffer of that size
    (not one small cache-hot buffer); the receiver writes them in place into
    another, backed already (what vmm --prefault gives a destination), or
    (fresh) receives each MiB into a buffer and pwrite()s it into a new memfd
    nobody has touched, which is a destination's default RAM filled the way
    its receiver fills it (migration/page_rx.c): on a VM whose host reclaims
    free memory, new pages cost far more than the copy. @settle_s: wait that
    long first, for the host to take back memory freed just before (as it
    has by the time a migration destination allocates). @bare: receive into
    one 1 MiB buffer over and over, the socket alone with nothing landing
    in RAM (the strictest limit)."""
    src = filled_memfd(nbytes, 0x5a)
    dst = None if fresh or bare else filled_memfd(nbytes, 0)
    dst_fd = None
    if fresh:
        dst_fd = os.memfd_create("bench-dst")
        os.ftruncate(dst_fd, nbytes)
    time.sleep(settle_s)
    if kind == "unix":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(1)
        a = socket.create_connection(("127.0.0.1", port))
        b, _ = ls.accept()
        ls.close()
    sview = memoryview(src)
    dview = memoryview(dst) if dst is not None else None

    def rx_in_place():
        got = 0
        while got < nbytes:
            n = b.recv_into(dview[got:got + (1 << 20)])
            if not n:
                break
            got += n

    def rx_written():
        buf = memoryview(bytearray(1 << 20))
        for off in range(0, nbytes, 1 << 20):
            want = min(1 << 20, nbytes - off)
            got = 0
            while got < want:
                n = b.recv_into(buf[got:want])
                if not n:
                    return
                got += n
            os.pwrite(dst_fd, buf[:want], off)

    def rx_bare():
        buf = memoryview(bytearray(1 << 20))
        got = 0
        while got < nbytes:
            n = b.recv_into(buf[got % (1 << 20):])
            if not n:
                break
            got += n

    t = threading.Thread(target=rx_written if fresh else rx_bare if bare else rx_in_place)
    t0 = time.perf_counter()
    t.start()
    for off in range(0, nbytes, 1 << 20):
        a.sendall(sview[off:off + (1 << 20)])
    t.join()
    dt = time.perf_counter() - t0
    a.close()
    b.close()
    sview.release()
    src.close()
    if dview is not None:
        dview.release()
        dst.close()
    if dst_fd is not None:
        os.close(dst_fd)
    return dt


def median(values):
    return sorted(values)[len(values) // 2]


# ------------------------------------------------------------------ vmm

def ctl(vmm, sock, verb, data=None):
    cmd = [vmm, "ctl", "--api-sock", sock, verb] + (["--data", data] if data else [])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    try:
        return json.loads(p.stdout.decode() or "{}")
    except ValueError:
        return {}


def wait_api(vmm, sock, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(sock) and ctl(vmm, sock, "vmm.ping").get("pid"):
            return True
        time.sleep(0.02)
    return False


def gap_us(text):
    m = re.search(r"PASS memtest max_gap_us=(\d+)", text)
    return int(m.group(1)) if m else None


def vmm_migrate(args, tmp, url, cmdline, mem_mib, cpus, local=False, warm=1.5):
    src_sock, dst_sock = os.path.join(tmp, "src.sock"), os.path.join(tmp, "dst.sock")
    src = subprocess.Popen([args.vmm, "serve", "--api-sock", src_sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    dst = subprocess.Popen([args.vmm, "run", "--incoming", url], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    res = {"ok": False}
    try:
        if not wait_api(args.vmm, src_sock):
            raise RuntimeError("vmm serve did not start")
        cfg = {"kernel": args.guest, "cmdline": cmdline, "cpus": cpus, "memory_mib": mem_mib}
        ctl(args.vmm, src_sock, "vm.create", json.dumps(cfg))
        ctl(args.vmm, src_sock, "vm.boot")
        time.sleep(warm)
        body = {"destination_url": url, "downtime_ms": DOWNTIME_MS}
        if local:
            body["local"] = True
        r = ctl(args.vmm, src_sock, "vm.send-migration", json.dumps(body))
        if r.get("migration") != "active":
            raise RuntimeError("vm.send-migration: %s" % r)
        end = time.time() + 120
        mig = {}
        while time.time() < end:
            mig = ctl(args.vmm, src_sock, "vm.info").get("migration", {})
            if mig.get("status") not in (None, "active"):
                break
            time.sleep(0.05)
        if mig.get("status") != "completed":
            raise RuntimeError("migration %s: %s" % (mig.get("status"), mig.get("message")))
        if "memtest" not in cmdline:
            dst.kill()  # the idle guest has nothing to report: do not wait out its ticks
        out, err = dst.communicate(timeout=180)
        res = {"ok": True, "total_ms": mig["total_us"] / 1e3, "downtime_ms": mig["downtime_us"] / 1e3,
               "bytes_sent": mig["bytes_sent"], "passes": mig["pass"] + 1,
               "throughput_bytes_per_s": mig["bandwidth_bytes_per_s"],
               "pause_breakdown_us": {k: mig.get(k) for k in ("stop_vcpus_us", "last_pass_us", "state_save_us",
                                                            "dest_ack_us")},
               "guest_gap_ms": (gap_us(out.decode()) or 0) / 1e3 if "memtest" in cmdline else None,
               "guest_exit": dst.returncode if "memtest" in cmdline else None}
    except Exception as e:  # noqa: BLE001 - report and go on with the other cases
        res["error"] = str(e)
        log("vmm", url, cmdline, "failed:", e)
    finally:
        ctl(args.vmm, src_sock, "vmm.shutdown")
        for p in (src, dst):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return res


def vmm_throughput(args, tmp, url, mem_mib, connections=1, prefault=False):
    """Transfer rate with the vCPUs out of the way: memtest writes every page
    (so RAM is full of non-zero data), is paused, then migrated (one pass).
    With @prefault the destination backs all its RAM before the stream (not
    counted: the rate is the pass's)."""
    src_sock = os.path.join(tmp, "tsrc.sock")
    src = subprocess.Popen([args.vmm, "serve", "--api-sock", src_sock], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    dst = subprocess.Popen([args.vmm, "run", "--incoming", url] + (["--prefault"] if prefault else []),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = {"ok": False}
    try:
        if not wait_api(args.vmm, src_sock):
            raise RuntimeError("vmm serve did not start")
        cfg = {"kernel": args.guest, "cmdline": "test=memtest seconds=120 cpus=2", "cpus": 2, "memory_mib": mem_mib}
        ctl(args.vmm, src_sock, "vm.create", json.dumps(cfg))
        ctl(args.vmm, src_sock, "vm.boot")
        time.sleep(8)
        ctl(args.vmm, src_sock, "vm.pause")
        ctl(args.vmm, src_sock, "vm.send-migration", json.dumps({"destination_url": url,
                                                                 "connections": connections}))
        end, mig = time.time() + 120, {}
        while time.time() < end:
            mig = ctl(args.vmm, src_sock, "vm.info").get("migration", {})
            if mig.get("status") not in (None, "active"):
                break
            time.sleep(0.05)
        if mig.get("status") != "completed":
            raise RuntimeError("migration %s: %s" % (mig.get("status"), mig.get("message")))
        res = {"ok": True, "bytes_sent": mig["bytes_sent"], "total_ms": mig["total_us"] / 1e3,
               "throughput_bytes_per_s": mig["bandwidth_bytes_per_s"]}
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
        log("throughput", url, "failed:", e)
    finally:
        ctl(args.vmm, src_sock, "vmm.shutdown")
        dst.kill()
        for p in (src, dst):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return res


# ------------------------------------------------------------------ QEMU

class Qmp:
    def __init__(self, path):
        end = time.time() + 10
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.02)
        self.f = self.s.makefile("rwb")
        json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    events = None

    def cmd(self, name, **arguments):
        self.f.write(json.dumps({"execute": name, "arguments": arguments}).encode() + b"\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                self.events = (self.events or []) + [r]
            if "return" in r or "error" in r:
                return r

    def event_time_us(self, name):
        """Host time (us) of the first event @name seen so far (QMP stamps each)."""
        for e in self.events or []:
            if e["event"] == name:
                return e["timestamp"]["seconds"] * 1000000 + e["timestamp"]["microseconds"]
        return None

    def close(self):
        self.s.close()


def qemu_start_pair(args, tmp, url, cmdline, mem_mib, cpus):
    """A QEMU source running @cmdline and a destination on -incoming @url,
    each with a QMP socket: (src, dst, qmp_src_path, qmp_dst_path)."""
    qmp_path, dqmp_path = os.path.join(tmp, "qmp.sock"), os.path.join(tmp, "dqmp.sock")
    common = [args.qemu] + QEMU_BASE + ["-m", str(mem_mib), "-smp", str(cpus), "-kernel", args.guest,
                                        "-append", cmdline]
    src = subprocess.Popen(common + ["-qmp", "unix:%s,server=on,wait=off" % qmp_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dst = subprocess.Popen(common + ["-qmp", "unix:%s,server=on,wait=off" % dqmp_path, "-incoming", url],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return src, dst, qmp_path, dqmp_path


def qemu_run_migration(q, url, **params):
    """Set @params (max-bandwidth always lifted), migrate to @url, and wait:
    the final query-migrate answer."""
    # QEMU 7.2 throttles migration to 128 MiB/s by default (max-bandwidth):
    # lift it, as vmm has no throttle. Throttled, the busy 1 GiB guest did
    # not converge before memtest ended its 20 s and the QEMU source exited.
    r = q.cmd("migrate-set-parameters", **dict(params, **{"max-bandwidth": QEMU_MAX_BANDWIDTH}))
    if "error" in r:
        raise RuntimeError("migrate-set-parameters: %s" % r["error"])
    r = q.cmd("migrate", uri=url)
    if "error" in r:
        raise RuntimeError(r["error"])
    end, st = time.time() + 120, {}
    while time.time() < end:
        st = q.cmd("query-migrate")["return"]
        if st.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    if st.get("status") != "completed":
        raise RuntimeError("QEMU migration: %s" % st)
    return st


def qemu_stop_all(qmps, procs):
    for c in qmps:
        if c:
            c.close()
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def qemu_migrate(args, tmp, url, cmdline, mem_mib, cpus, warm=1.5):
    src, dst, qmp_path, dqmp_path = qemu_start_pair(args, tmp, url, cmdline, mem_mib, cpus)
    res = {"ok": False}
    q = dq = None
    try:
        q = Qmp(qmp_path)
        dq = Qmp(dqmp_path)
        time.sleep(warm)
        st = qemu_run_migration(q, url, **{"downtime-limit": DOWNTIME_MS})
        # Guest-visible downtime, in us: the source's STOP event (its vCPUs
        # are stopped) to the destination's RESUME (they are about to run).
        # QEMU's own "downtime" is whole ms and ends when the source has sent
        # the last byte, before the destination loads the device state.
        stop_us = q.event_time_us("STOP")
        for _ in range(100):
            resume_us = dq.event_time_us("RESUME")
            if resume_us:
                break
            dq.cmd("query-status")
            time.sleep(0.01)
        q.cmd("quit")
        if "memtest" not in cmdline:
            dst.kill()
        out, err = dst.communicate(timeout=180)
        ram = st.get("ram", {})
        res = {"ok": True, "total_ms": st.get("total-time"), "downtime_ms": st.get("downtime"),
               "stop_to_resume_ms": (resume_us - stop_us) / 1e3 if stop_us and resume_us else None,
               "bytes_sent": ram.get("transferred"),
               "throughput_bytes_per_s": ram.get("mbps", 0) * 1e6 / 8,
               "guest_gap_ms": (gap_us(out.decode()) or 0) / 1e3 if "memtest" in cmdline else None,
               "guest_exit": dst.returncode if "memtest" in cmdline else None}
    except Exception as e:  # noqa: BLE001
        if src.poll() is not None:  # say why QEMU went away (e.g. the guest ended or failed)
            tail = (src.stdout.read() or b"")[-200:].decode(errors="replace").strip()
            e = "%s; QEMU source exited with %s; console: %s" % (e, src.returncode, tail)
        res["error"] = str(e)
        log("qemu", url, cmdline, "failed:", e)
    finally:
        qemu_stop_all((q, dq), (src, dst))
    return res


def qemu_throughput(args, tmp, url, mem_mib):
    """QEMU's rate for the same paused, filled 1 GiB guest (one pass): its
    own ram.mbps figure."""
    src, dst, qmp_path, dqmp_path = qemu_start_pair(args, tmp, url, "test=memtest seconds=120 cpus=2", mem_mib, 2)
    res = {"ok": False}
    q = dq = None
    try:
        q = Qmp(qmp_path)
        dq = Qmp(dqmp_path)
        time.sleep(8)
        q.cmd("stop")
        st = qemu_run_migration(q, url)
        ram = st.get("ram", {})
        res = {"ok": True, "bytes_sent": ram.get("transferred"), "total_ms": st.get("total-time"),
               "throughput_bytes_per_s": ram.get("mbps", 0) * 1e6 / 8}
    except Exception as e:  # noqa: BLE001
        res["error"] = str(e)
        log("qemu throughput", url, "failed:", e)
    finally:
        qemu_stop_all((q, dq), (src, dst))
    return res


# ------------------------------------------------------------------ main

def median_run(results, key):
    """The run whose @key is the median of the successful ones, with every
    run's value in @key + "_runs"; the first failure if none succeeded."""
    ok = sorted((r for r in results if r.get("ok") and r.get(key) is not None), key=lambda r: r[key])
    if not ok:
        return results[0]
    best = dict(ok[len(ok) // 2])
    best[key + "_runs"] = [r[key] for r in ok]
    best["failed_runs"] = len(results) - len(ok)
    return best


def measure_socket_limits(args, res, port):
    runs = 3
    for kind in ("unix", "tcp"):
        t = [socket_copy(kind, args.mem_mib << 20, port) for _ in range(runs)]
        res["socket_limit"][kind] = {"seconds": median(t), "bytes_per_s": (args.mem_mib << 20) / median(t),
                                     "seconds_runs": t}
        if "throughput" not in args.sections:
            continue
        t = [socket_copy(kind, args.mem_mib << 20, port + 2, bare=True) for _ in range(runs)]
        res["socket_limit_bare"][kind] = {"seconds": median(t), "bytes_per_s": (args.mem_mib << 20) / median(t),
                                          "seconds_runs": t}
        t = [socket_copy(kind, args.mem_mib << 20, port + 1, fresh=True, settle_s=args.settle_s)
             for _ in range(runs)]
        res["socket_limit_fresh_memory"][kind] = {"seconds": median(t), "bytes_per_s": (args.mem_mib << 20) / median(t),
                                                  "seconds_runs": t, "settle_s": args.settle_s}


def run_downtime_cases(args, res, tmp, port):
    loads = {
        "idle": ("test=irq ticks=20000 period_us=1000", 1),
        "busy": ("test=memtest seconds=20 cpus=2", 2),
    }
    # Guest-visible gaps need a baseline: the same memtest, never migrated.
    # Emulated vCPUs on a 2-core host see scheduling gaps of tens of ms.
    p = subprocess.run([args.vmm, "run", "--kernel", args.guest, "--cmdline", loads["busy"][0], "--cpus", "2",
                        "--memory", str(args.mem_mib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    res["baseline_guest_gap_ms"] = (gap_us(p.stdout.decode()) or 0) / 1e3
    for kind in ("unix", "tcp"):
        for load, (cmdline, cpus) in loads.items():
            port += 1
            url = "unix:%s/m.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
            case = {"transport": kind, "load": load}
            # Idle downtimes are sub-millisecond and scheduling noise is
            # not: repeat, keep the run with the median downtime and all
            # the values. A busy run takes long enough to say it once.
            runs = args.idle_runs if load == "idle" else 1
            case["vmm"] = median_run([vmm_migrate(args, tmp, url, cmdline, args.mem_mib, cpus)
                                      for _ in range(runs)], "downtime_ms")
            if args.qemu:
                qres = []
                for _ in range(runs):
                    port += 1
                    qurl = "unix:%s/q.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
                    qres.append(qemu_migrate(args, tmp, qurl, cmdline, args.mem_mib, cpus))
                case["qemu"] = median_run(qres, "stop_to_resume_ms")
            lim = res["socket_limit"][kind]["bytes_per_s"]
            tp = case["vmm"].get("throughput_bytes_per_s")
            case["vmm_throughput_vs_socket"] = tp / lim if tp else None
            q = case.get("qemu", {})
            if case["vmm"].get("ok") and q.get("ok") and case["vmm"]["downtime_ms"] > 0:
                case["qemu_over_vmm_downtime"] = q["downtime_ms"] / case["vmm"]["downtime_ms"]
                if q.get("stop_to_resume_ms"):
                    case["qemu_stop_to_resume_over_vmm_downtime"] = (q["stop_to_resume_ms"] /
                                                                     case["vmm"]["downtime_ms"])
            res["cases"].append(case)
    return port


def run_throughput_cases(args, res, tmp, port):
    """A paused, filled guest, one pass. Into fresh memory (the default) the
    limit is a socket copy into fresh memory; with --prefault, a socket copy
    into backed memory."""
    res["throughput"] = {}
    for kind in ("unix", "tcp"):
        for conns in (1, 2):
            for prefault in (False, True):
                port += 1
                url = "unix:%s/t.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
                t = vmm_throughput(args, tmp, url, args.mem_mib, conns, prefault)
                limit = res["socket_limit" if prefault else "socket_limit_fresh_memory"][kind]["bytes_per_s"]
                t["connections"], t["prefault"] = conns, prefault
                t["vs_socket_limit"] = t["throughput_bytes_per_s"] / limit if t.get("ok") else None
                bare = res["socket_limit_bare"][kind]["bytes_per_s"]
                t["vs_bare_socket"] = t["throughput_bytes_per_s"] / bare if t.get("ok") else None
                res["throughput"]["%s x%d%s" % (kind, conns, " prefault" if prefault else "")] = t
        if args.qemu:
            port += 1
            url = "unix:%s/tq.sock" % tmp if kind == "unix" else "tcp:127.0.0.1:%d" % port
            q = qemu_throughput(args, tmp, url, args.mem_mib)
            v = res["throughput"]["%s x1" % kind]
            q["vmm_over_qemu"] = (v["throughput_bytes_per_s"] / q["throughput_bytes_per_s"]
                                  if q.get("ok") and v.get("ok") and q["throughput_bytes_per_s"] else None)
            res["throughput"]["%s qemu" % kind] = q
    return port


def run_live_update_cases(args, res, tmp):
    for gib in (1, 4):
        r = vmm_migrate(args, tmp, "unix:%s/lu.sock" % tmp, "test=memtest seconds=4 cpus=2", gib * 1024, 2,
                        local=True, warm=1.0)
        r["memory_gib"] = gib
        res["live_update"].append(r)


def print_report(args, res):
    fmt = lambda v, f="%.1f": (f % v) if isinstance(v, (int, float)) else "-"
    if res["cases"]:
        print("\nlive migration, %d MiB guest, downtime limit %d ms" % (args.mem_mib, DOWNTIME_MS))
        print("vmm pause: source pauses -> destination confirms it runs the guest; QEMU down: its own figure\n"
              "(whole ms, source side only); QEMU stop->run: source STOP event -> destination RESUME event.\n"
              "Idle rows: median of %d runs." % args.idle_runs)
        print("%-5s %-5s | %9s %9s %9s %8s | %9s %9s %9s %9s | %6s %6s" % (
            "xport", "load", "vmm total", "vmm pause", "guest gap", "tput/lim", "qemu tot", "qemu down",
            "q stop-run", "guest gap", "q/v", "qs/v"))
    for c in res["cases"]:
        v, q = c["vmm"], c.get("qemu", {})
        print("%-5s %-5s | %9s %9s %9s %8s | %9s %9s %9s %9s | %6s %6s" % (
            c["transport"], c["load"], fmt(v.get("total_ms")), fmt(v.get("downtime_ms"), "%.2f"),
            fmt(v.get("guest_gap_ms")), fmt(c.get("vmm_throughput_vs_socket"), "%.2f"), fmt(q.get("total_ms")),
            fmt(q.get("downtime_ms")), fmt(q.get("stop_to_resume_ms"), "%.2f"), fmt(q.get("guest_gap_ms")),
            fmt(c.get("qemu_over_vmm_downtime"), "%.1fx"),
            fmt(c.get("qemu_stop_to_resume_over_vmm_downtime"), "%.1fx")))
    if "baseline_guest_gap_ms" in res:
        print("baseline guest gap (memtest, never migrated): %.1f ms" % res["baseline_guest_gap_ms"])
    for k, t in res.get("throughput", {}).items():
        if "qemu" in k:
            print("throughput %-16s (QEMU, same paused guest): %s MiB/s; vmm x1 / QEMU = %s" % (
                k, fmt((t.get("throughput_bytes_per_s") or 0) / (1 << 20), "%.0f"), fmt(t.get("vmm_over_qemu"), "%.2f")))
        else:
            print("throughput %-16s (paused 1 GiB memtest guest, one pass): %s MiB/s = %s of the %s, %s of the bare socket" % (
                k, fmt((t.get("throughput_bytes_per_s") or 0) / (1 << 20), "%.0f"), fmt(t.get("vs_socket_limit"), "%.2f"),
                "socket limit" if t.get("prefault") else "socket limit into fresh memory",
                fmt(t.get("vs_bare_socket"), "%.2f")))
    for k, v in res["socket_limit"].items():
        fresh = res["socket_limit_fresh_memory"].get(k)
        bare = res["socket_limit_bare"].get(k)
        print("socket limit %-4s: %.0f MiB/s%s%s (medians of 3)" % (
            k, v["bytes_per_s"] / (1 << 20),
            " (into fresh memory after %d s: %.0f MiB/s)" % (fresh["settle_s"], fresh["bytes_per_s"] / (1 << 20))
            if fresh else "",
            " (bare, into one 1 MiB buffer: %.0f MiB/s)" % (bare["bytes_per_s"] / (1 << 20)) if bare else ""))
    print("load average at the start: %s" % " ".join(res["load_average"]))
    for r in res["live_update"]:
        print("live update %d GiB: pause %s ms, guest gap %s ms" % (r["memory_gib"], fmt(r.get("downtime_ms"), "%.2f"),
                                                                   fmt(r.get("guest_gap_ms"))))


SECTIONS = ("downtime", "throughput", "live-update")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mem-mib", type=int, default=1024)
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--idle-runs", type=int, default=5, help="runs per idle case (median reported)")
    ap.add_argument("--settle-s", type=float, default=10,
                    help="seconds before each fresh-memory socket copy, for the host to reclaim freed memory")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset of %s" % ", ".join(SECTIONS))
    args = ap.parse_args()
    args.sections = [x for x in args.sections.split(",") if x]
    bad = [x for x in args.sections if x not in SECTIONS]
    if bad:
        ap.error("unknown section %s (known: %s)" % (", ".join(bad), ", ".join(SECTIONS)))
    args.qemu = None if args.no_qemu else shutil.which("qemu-system-x86_64")
    if not os.path.exists("/dev/kvm"):
        json.dump({"skipped": "no /dev/kvm"}, open(args.out, "w"))
        log("no /dev/kvm; skipped")
        return 0

    port = 30000 + os.getpid() % 20000
    res = {"memory_mib": args.mem_mib, "downtime_limit_ms": DOWNTIME_MS, "sections": args.sections,
           "socket_limit": {}, "socket_limit_fresh_memory": {}, "socket_limit_bare": {},
           "load_average": open("/proc/loadavg").read().split()[:3], "cases": [], "live_update": []}
    measure_socket_limits(args, res, port + 90)
    with tempfile.TemporaryDirectory(prefix="vmm-bench-mig-") as tmp:
        if "downtime" in args.sections:
            port = run_downtime_cases(args, res, tmp, port)
        if "throughput" in args.sections:
            port = run_throughput_cases(args, res, tmp, port)
        if "live-update" in args.sections:
            run_live_update_cases(args, res, tmp)
    json.dump(res, open(args.out, "w"), indent=2)
    print_report(args, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
