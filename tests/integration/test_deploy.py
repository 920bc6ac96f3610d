#!/usr/bin/python3
"""deploy/ over real SSH: four network namespaces on a private bridge
(controller, master, two slaves), one sshd per host; from the controller,
ansible_setup.yml twice (the second changes nothing), ansible_dask_start.yml
twice (no second copy of a daemon), a phantom subject submitted from the
controller through `ssh -L 8786:127.0.0.1:8786 root@master` with the
installed binaries and the client certificate setup made (CURVE keys, on by
default; without a certificate the scheduler refuses) and compared with
dmri-run, ansible_dask_stop.yml, and no dmri process left. The hosts share this machine's filesystem, so each gets
its own dmri_prefix and dmri_state_dir through inventory host variables.
Needs root (namespaces); exits 77 (ctest: skipped) otherwise."""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import OUTPUTS, same_outputs  # noqa: E402

NAME = "dmrid6"                 # prefix of every namespace of this test
NET = "10.231.6"                # private /24, used only inside these namespaces
HOSTS = {"ctl": 1, "master": 2, "slave1": 3, "slave2": 4}
TMP_PREFIX = "dmri-deploy-test-"
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(SRC, "deploy")
from checks import FAILURES, expect  # noqa: E402


def sh(*cmd, check=True, timeout=60, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def ns(host):
    return f"{NAME}-{host}"


def in_ns(host, *cmd):
    return ["ip", "netns", "exec", ns(host), *cmd]


def our_namespaces():
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NAME + "-")]


def procs_under(root):
    """pids whose executable lies under root (our installs, our daemons)."""
    found = []
    for p in glob.glob("/proc/[0-9]*"):
        try:
            exe = os.readlink(p + "/exe")
        except OSError:
            continue
        if exe.startswith(root.rstrip("/") + "/"):
            found.append((int(p[6:]), exe))
    return found


def kill_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_leftovers():
    """What a crashed earlier run of this test left: processes in our
    namespaces, the namespaces, its temporary folders."""
    for n in our_namespaces():
        for pid in sh("ip", "netns", "pids", n, check=False).stdout.split():
            kill_pid(int(pid))
    for n in our_namespaces():
        sh("ip", "netns", "del", n, check=False)
    for d in glob.glob(os.path.join(tempfile.gettempdir(), TMP_PREFIX + "*")):
        for pid, _ in procs_under(d):
            kill_pid(pid)
        shutil.rmtree(d, ignore_errors=True)


def make_network():
    sh("ip", "netns", "add", ns("sw"))
    sh("ip", "-n", ns("sw"), "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", ns("sw"), "link", "set", "br0", "up")
    for h, i in HOSTS.items():
        sh("ip", "netns", "add", ns(h))
        sh("ip", "-n", ns("sw"), "link", "add", f"v{h}", "type", "veth", "peer", "name", "eth0",
           "netns", ns(h))
        sh("ip", "-n", ns("sw"), "link", "set", f"v{h}", "master", "br0", "up")
        sh("ip", "-n", ns(h), "addr", "add", f"{NET}.{i}/24", "dev", "eth0")
        sh("ip", "-n", ns(h), "link", "set", "eth0", "up")
        sh("ip", "-n", ns(h), "link", "set", "lo", "up")


def start_sshd(tmp, host, procs):
    d = os.path.join(tmp, "ssh")
    key = os.path.join(d, f"hostkey-{host}")
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
    cfg = os.path.join(d, f"sshd-{host}.conf")
    with open(cfg, "w") as f:
        f.write(f"""ListenAddress {NET}.{HOSTS[host]}
Port 22
HostKey {key}
PidFile {d}/sshd-{host}.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
""")
    log = open(os.path.join(d, f"sshd-{host}.log"), "w")
    p = subprocess.Popen(in_ns(host, "/usr/sbin/sshd", "-D", "-e", "-f", cfg),
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def ansible(tmp, playbook, env, timeout=420, inventory="inventory", expect_failure=False):
    t0 = time.time()
    r = subprocess.run(["timeout", str(timeout), *in_ns("ctl", "ansible-playbook", "-i",
                                                          os.path.join(tmp, inventory),
                                                          os.path.join(DEPLOY, playbook))],
                       capture_output=True, text=True, env=env, timeout=timeout + 30)
    took = time.time() - t0
    recap = {}
    for m in re.finditer(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                         r.stdout, re.M):
        recap[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)),
                             "unreachable": int(m.group(4)), "failed": int(m.group(5))}
    print(f"  {playbook}: exit {r.returncode} in {took:.1f} s, recap {recap}", flush=True)
    if r.returncode != 0 and not expect_failure:
        print(r.stdout[-6000:], r.stderr[-2000:])
    return r, recap


def check_examples(tmp):
    """hosts.example parses in both forms (EC2 as is, Azure once uncommented)
    with the right groups, and every playbook passes --syntax-check."""
    text = open(os.path.join(DEPLOY, "hosts.example")).read()
    azure = text[text.index("# --- Azure"):text.index("# --- settings")]
    azure = "\n".join(line[2:] if line.startswith("# ") else "" for line in azure.splitlines()
                      if not line.startswith("# ---") and not line.startswith("# Needs"))
    with open(os.path.join(tmp, "hosts.azure"), "w") as f:
        f.write(azure + "\n")
    env = dict(os.environ, ANSIBLE_HOME=os.path.join(tmp, "ansible-home"),
               ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"))
    ec2 = text[:text.index("# --- Azure")]
    with open(os.path.join(tmp, "hosts.ec2"), "w") as f:
        f.write(ec2)
    for form, keys in (("ec2", ("ansible_user", "ansible_ssh_private_key_file")),
                       ("azure", ("ansible_port", "ansible_password", "ansible_user"))):
        r = sh("ansible-inventory", "-i", os.path.join(tmp, f"hosts.{form}"), "--list", check=False,
               env=env)
        inv = json.loads(r.stdout) if r.returncode == 0 else {}
        masters = inv.get("masters", {}).get("hosts", [])
        slaves = inv.get("slaves", {}).get("hosts", [])
        hv = inv.get("_meta", {}).get("hostvars", {})
        expect(masters == ["master"] and slaves == ["slave1", "slave2"] and
               all(k in hv.get(h, {}) for h in masters + slaves for k in keys),
               f"hosts.example, {form} form: [masters] {masters}, [slaves] {slaves}, {keys}")
    for pb in ("ansible_setup.yml", "ansible_start.yml", "ansible_stop.yml",
               "ansible_dask_start.yml", "ansible_dask_stop.yml"):
        r = sh("ansible-playbook", "--syntax-check", "-i", os.path.join(tmp, "hosts.ec2"),
               os.path.join(DEPLOY, pb), check=False, env=env)
        expect(r.returncode == 0, f"{pb} passes --syntax-check {r.stderr.strip()[-200:]}")


def mode(path):
    return os.stat(path).st_mode & 0o777 if os.path.exists(path) else None


def check_keys(tmp):
    """dmri-keygen ran on the master (every certificate there); each slave
    holds the cluster keys, authorized/ and its own certificate only."""
    kd = {h: os.path.join(tmp, "hosts", h, "state", "keys") for h in ("master", "slave1", "slave2")}
    names = ["client", "slave1", "slave2"]
    mk = kd["master"]
    expect(sorted(os.listdir(os.path.join(mk, "certs"))) == [n + ".cert" for n in names]
           and mode(os.path.join(mk, "cluster.secret")) == 0o600,
           f"master: dmri-keygen made the cluster key and certificates for {names}")
    for h in ("slave1", "slave2"):
        d = kd[h]
        same = all(os.path.exists(os.path.join(d, f)) and
                   open(os.path.join(d, f)).read() == open(os.path.join(mk, f)).read()
                   for f in ["cluster.pub", "cluster.secret", f"certs/{h}.cert"] +
                   [f"authorized/{n}.pub" for n in names])
        expect(same and os.listdir(os.path.join(d, "certs")) == [h + ".cert"] and
               sorted(os.listdir(os.path.join(d, "authorized"))) == [n + ".pub" for n in names]
               and mode(os.path.join(d, "cluster.secret")) == 0o600
               and mode(os.path.join(d, "certs", h + ".cert")) == 0o600
               and mode(os.path.join(d, "cluster.pub")) == 0o644,
               f"{h}: cluster keys, authorized/ and only its own certificate (0600)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    b = ap.parse_args().build_dir
    if os.geteuid() != 0:
        print("SKIP: test_deploy needs root (network namespaces, sshd); CI runs as root")
        return 77
    cache = os.path.join(b, "CMakeCache.txt")
    if os.path.exists(cache) and "DMRI_SANITIZE:BOOL=ON" in open(cache).read():
        print("SKIP: the deploy test builds its own release binaries on the hosts; it runs "
              "once, from the release build")
        return 77
    for tool in ("ansible-playbook", "/usr/sbin/sshd", "ssh-keygen", "ip"):
        if not shutil.which(tool):
            print(f"FAIL: {tool} is missing (scripts/install-deps.sh installs it)")
            return 1

    remove_leftovers()
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX)
    os.chmod(tmp, 0o755)
    procs = []
    tunnel = None
    cp_dir = os.path.join(tmp, "cp")
    t_start = time.time()
    try:
        os.makedirs(os.path.join(tmp, "ssh"))
        os.makedirs(cp_dir)
        os.makedirs("/run/sshd", exist_ok=True)   # sshd's privilege separation folder
        check_examples(tmp)
        make_network()
        idkey = os.path.join(tmp, "ssh", "id")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", idkey)
        shutil.copy(idkey + ".pub", os.path.join(tmp, "ssh", "authorized_keys"))
        for h in ("master", "slave1", "slave2"):
            start_sshd(tmp, h, procs)

        prefixes = {h: os.path.join(tmp, "hosts", h, "prefix") for h in ("master", "slave1", "slave2")}
        aws_src = os.path.join(tmp, "aws_credentials")
        with open(aws_src, "w") as f:
            f.write("[hcp]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = not-a-secret\n")
        lines = ["[masters]"]
        for h in ("master", "slave1", "slave2"):
            if h == "slave1":
                lines.append("\n[slaves]")
            hd = os.path.join(tmp, "hosts", h)
            lines.append(f"{h} ansible_host={NET}.{HOSTS[h]} dmri_prefix={hd}/prefix "
                         f"dmri_state_dir={hd}/state dmri_aws_credentials_dest={hd}/aws/credentials")
        lines += ["\n[all:vars]", "ansible_user=root", f"ansible_ssh_private_key_file={idkey}",
                  "ansible_python_interpreter=/usr/bin/python3", f"dmri_aws_credentials={aws_src}",
                  f"dmri_controller_tmp={tmp}", "dmri_build_jobs=2", "dmri_stop_timeout=10",
                  "dmri_worker_args='--nthreads 1'"]
        with open(os.path.join(tmp, "inventory"), "w") as f:
            f.write("\n".join(lines) + "\n")
        env = dict(os.environ,
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True",
                   ANSIBLE_SSH_CONTROL_PATH_DIR=cp_dir,
                   ANSIBLE_SSH_ARGS="-F /dev/null -o ControlMaster=auto -o ControlPersist=60s "
                                    "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
                   ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"),
                   ANSIBLE_REMOTE_TEMP=os.path.join(tmp, "ansible-remote"),
                   ANSIBLE_HOME=os.path.join(tmp, "ansible-home"),
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="False")
        hosts3 = ("master", "slave1", "slave2")

        print("setup, first run: packages, copy, build, install")
        r, recap = ansible(tmp, "ansible_setup.yml", env)
        expect(r.returncode == 0, "ansible_setup.yml succeeds")
        expect(all(recap.get(h, {}).get("changed", 0) > 0 for h in hosts3),
               "the first run changed every host")
        for h in hosts3:
            expect(all(os.access(os.path.join(prefixes[h], "bin", x), os.X_OK)
                       for x in ("dmri-scheduler", "dmri-worker", "dmri-submit", "dmri-run")),
                   f"{h}: binaries installed under its prefix")
            cred = os.path.join(tmp, "hosts", h, "aws", "credentials")
            expect(os.path.exists(cred) and (os.stat(cred).st_mode & 0o777) == 0o600
                   and open(cred).read() == open(aws_src).read(),
                   f"{h}: aws credentials copied, mode 0600")
        if r.returncode != 0:
            raise RuntimeError("setup failed")
        check_keys(tmp)

        print("setup, second run: nothing changes")
        r, recap = ansible(tmp, "ansible_setup.yml", env)
        expect(r.returncode == 0 and all(recap.get(h) and recap[h]["changed"] == 0 and
                                         recap[h]["failed"] == 0 for h in hosts3),
               f"second setup run: changed=0 on every host {recap}")

        print("start (under the name users type), twice")
        r, recap = ansible(tmp, "ansible_dask_start.yml", env)
        expect(r.returncode == 0, "ansible_dask_start.yml succeeds (every worker registered)")
        if r.returncode != 0:
            raise RuntimeError("start failed")
        r, recap = ansible(tmp, "ansible_dask_start.yml", env)
        expect(r.returncode == 0 and all(recap.get(h) and recap[h]["changed"] == 0 for h in hosts3),
               f"second start run: changed=0 {recap}")
        sched = [p for p in procs_under(prefixes["master"]) if p[1].endswith("/dmri-scheduler")]
        expect(len(sched) == 1 and len(procs_under(prefixes["master"])) == 1,
               f"exactly one dmri-scheduler on master: {procs_under(prefixes['master'])}")
        for h in ("slave1", "slave2"):
            ws = procs_under(prefixes[h])
            expect(len(ws) == 1 and ws[0][1].endswith("/dmri-worker"),
                   f"exactly one dmri-worker on {h}: {ws}")
            pidf = os.path.join(tmp, "hosts", h, "state", "run", "dmri-worker.pid")
            expect(os.path.exists(pidf) and ws and int(open(pidf).read()) == ws[0][0],
                   f"{h}: the pid file names the worker")
            cmd = open(f"/proc/{ws[0][0]}/cmdline").read().split("\0") if ws else []
            expect(f"{NET}.2:8786" in cmd and h in cmd and "--keys" in cmd,
                   f"{h}: worker points at the master's ansible_host, named {h}, keys: {cmd}")
        mlog = os.path.join(tmp, "hosts", "master", "state", "log", "dmri-scheduler.log")
        mlog_text = open(mlog).read() if os.path.exists(mlog) else ""
        expect("listening on tcp://0.0.0.0:8786" in mlog_text and
               "CURVE authentication and encryption on" in mlog_text,
               "scheduler log in the state dir, listening on 0.0.0.0:8786, CURVE on")

        print("submit from the controller through ssh -L 8786:127.0.0.1:8786 root@master")
        mbin = os.path.join(prefixes["master"], "bin")
        subj = os.path.join(tmp, "subj")
        sh(os.path.join(mbin, "dmri-phantom"), "--out", subj, "--shape", "20", "24", "16",
           "--seed", "6", "--b0", "3", "--shells", "1000,2000", "--dirs", "8")
        ref = os.path.join(tmp, "ref")
        sh(os.path.join(mbin, "dmri-run"), "--quiet", "--out", ref, subj, timeout=300)
        tunnel = subprocess.Popen(in_ns("ctl", "ssh", "-F", "/dev/null", "-i", idkey, "-N",
                                        "-o", "ExitOnForwardFailure=yes",
                                        "-o", "StrictHostKeyChecking=no",
                                        "-o", "UserKnownHostsFile=/dev/null",
                                        "-L", "8786:127.0.0.1:8786", f"root@{NET}.2"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # what a laptop user copies from the head: cluster.pub and their certificate
        laptop = os.path.join(tmp, "laptop-keys")
        os.makedirs(laptop)
        mkeys = os.path.join(tmp, "hosts", "master", "state", "keys")
        shutil.copy(os.path.join(mkeys, "cluster.pub"), laptop)
        shutil.copy(os.path.join(mkeys, "certs", "client.cert"), laptop)
        os.chmod(os.path.join(laptop, "client.cert"), 0o600)
        keys = ["--keys", laptop, "--cert", os.path.join(laptop, "client.cert")]
        st = None
        deadline = time.time() + 20
        while time.time() < deadline and tunnel.poll() is None:
            st = sh(*in_ns("ctl", os.path.join(mbin, "dmri-submit"), "--status", "--timeout",
                           "2", *keys), check=False)
            if st.returncode == 0:
                break
            time.sleep(0.3)
        expect(st is not None and st.returncode == 0 and "2 workers" in st.stdout
               and "slave1" in st.stdout and "slave2" in st.stdout,
               f"dmri-submit --status through the tunnel lists both slaves: "
               f"{st.stdout if st else ''} {st.stderr if st else ''}")
        r = sh(*in_ns("ctl", os.path.join(mbin, "dmri-submit"), "--status", "--timeout", "5"),
               check=False, timeout=30)
        expect(r.returncode == 1 and "authentication failed" in r.stderr,
               f"without a certificate the scheduler refuses: exit {r.returncode} "
               f"{r.stderr.strip()[-300:]}")
        out = os.path.join(tmp, "out")
        r = sh(*in_ns("ctl", os.path.join(mbin, "dmri-submit"), "--quiet", "--out", out,
                      *keys, subj), check=False, timeout=300)
        expect(r.returncode == 0, f"dmri-submit through the tunnel: exit {r.returncode} "
                                  f"{r.stderr.strip()[-300:]}")
        if r.returncode == 0:
            probs = same_outputs(os.path.join(out, "subj"), os.path.join(ref, "subj"))
            expect(not probs, f"outputs identical to dmri-run's {probs}")
            same_bytes = [f for f in OUTPUTS if open(os.path.join(out, "subj", f), "rb").read() ==
                          open(os.path.join(ref, "subj", f), "rb").read()]
            expect(len(same_bytes) == len(OUTPUTS),
                   f"output files byte-identical: {len(same_bytes)} of {len(OUTPUTS)}")
        ntasks = {}
        for h in ("slave1", "slave2"):
            wlog = os.path.join(tmp, "hosts", h, "state", "log", "dmri-worker.log")
            ntasks[h] = open(wlog, errors="replace").read().count(" done in ") if os.path.exists(wlog) else 0
        expect(sum(ntasks.values()) > 0, f"the slaves computed the subject (tasks in their logs: {ntasks})")
        tunnel.terminate()
        tunnel.wait(timeout=10)
        tunnel = None

        print("stop")
        r, recap = ansible(tmp, "ansible_dask_stop.yml", env)
        expect(r.returncode == 0, "ansible_dask_stop.yml succeeds")
        left = [p for h in hosts3 for p in procs_under(prefixes[h])]
        expect(not left, f"no dmri process left: {left}")
        pidfiles = glob.glob(os.path.join(tmp, "hosts", "*", "state", "run", "*.pid"))
        expect(not pidfiles, f"pid files removed: {pidfiles}")
        logs = {h: open(os.path.join(tmp, "hosts", h, "state", "log",
                                     "dmri-scheduler.log" if h == "master" else "dmri-worker.log"),
                        errors="replace").read() for h in hosts3}
        expect("shutting down: telling workers" in logs["master"] and
               all("SIGTERM received" in logs[h] for h in ("slave1", "slave2")),
               "every daemon stopped gracefully on SIGTERM (their logs)")
        r, recap = ansible(tmp, "ansible_dask_stop.yml", env)
        expect(r.returncode == 0 and all(recap.get(h) and recap[h]["changed"] == 0 for h in hosts3),
               f"stopping a stopped cluster changes nothing {recap}")

        print("a worker that cannot reach the scheduler: the start fails naming it")
        inv = open(os.path.join(tmp, "inventory")).read()
        inv = inv.replace(f"slave2 ansible_host={NET}.4 ",
                          f"slave2 ansible_host={NET}.4 dmri_scheduler_address={NET}.9 ")
        with open(os.path.join(tmp, "inventory.bad"), "w") as f:
            f.write(inv + "dmri_register_retries=3\n")
        r, recap = ansible(tmp, "ansible_start.yml", env, inventory="inventory.bad",
                           expect_failure=True)
        expect(r.returncode != 0 and "workers not registered: slave2" in r.stdout,
               "start fails with 'workers not registered: slave2'")
        r, recap = ansible(tmp, "ansible_stop.yml", env, inventory="inventory.bad")
        left = [p for h in hosts3 for p in procs_under(prefixes[h])]
        expect(r.returncode == 0 and not left, f"stop cleans that up too: {left}")
        print(f"  deploy test took {time.time() - t_start:.0f} s")
    except Exception as e:  # noqa: BLE001
        expect(False, f"exception: {e!r}")
    finally:
        if FAILURES:
            for f in sorted(glob.glob(os.path.join(tmp, "hosts", "*", "state", "log", "*.log")) +
                            glob.glob(os.path.join(tmp, "ssh", "*.log"))):
                print(f"----- {f}:")
                print(open(f, errors="replace").read()[-3000:])
        if tunnel and tunnel.poll() is None:
            tunnel.kill()
            tunnel.wait()
        # ssh masters of this run, then every process of our installs, then
        # the sshds, then the namespaces
        for sock in glob.glob(os.path.join(cp_dir, "*")):
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit",
                            "x"], capture_output=True, timeout=10)
        for pid, _ in procs_under(tmp):
            kill_pid(pid)
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for n in our_namespaces():
            for pid in sh("ip", "netns", "pids", n, check=False).stdout.split():
                kill_pid(int(pid))
            sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} checks FAILED")
        return 1
    print("all deploy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
