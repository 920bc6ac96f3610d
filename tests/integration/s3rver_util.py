"""A real S3 server on loopback for the tests: npm @20minutes/s3rver@4.0.4 (it
checks SigV4 signatures; see ../shared/TESTING.md), installed once into a cache
folder, and Debian's aws CLI (/usr/bin/aws) as an independent client."""
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

S3RVER_PKG = "@20minutes/s3rver@4.0.4"
KEY_ID, SECRET = "S3RVER", "S3RVER"
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_s3rver(cache):
    """npm install into a cache folder once; a clear failure if impossible."""
    marker = os.path.join(cache, "node_modules", "@20minutes", "s3rver", "lib", "cli.js")
    os.makedirs(cache, exist_ok=True)
    lock = open(os.path.join(cache, ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # tests running side by side install once
    if not os.path.exists(marker):
        npm = shutil.which("npm")
        if not npm or not shutil.which("node"):
            sys.exit("FAIL: node/npm not found: this test needs Node 20 with npm to run "
                     f"{S3RVER_PKG} (see ../shared/TESTING.md, scripts/install-deps.sh)")
        os.makedirs(cache, exist_ok=True)
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", cache,
                            S3RVER_PKG], capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or not os.path.exists(marker):
            sys.exit(f"FAIL: could not install {S3RVER_PKG} with npm (registry unreachable?):\n"
                     + r.stderr[-2000:])
    script = os.path.join(cache, "s3v4.js")
    with open(script, "w") as f:
        f.write("require('@20minutes/s3rver/lib/cli').parseAsync(process.argv);\n")
    return script


class Server:
    def __init__(self, script, datadir):
        self.script, self.datadir, self.port = script, datadir, free_port()
        self.proc = None

    def start(self):
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.proc = subprocess.Popen(["node", self.script, "-d", self.datadir, "-a", "127.0.0.1",
                                      "-p", str(self.port), "--silent"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit("FAIL: s3rver exited: " + self.proc.stderr.read().decode()[-2000:])
                time.sleep(0.1)
        sys.exit("FAIL: s3rver did not start listening")

    def kill(self):
        """SIGKILL: connections are cut at once (stop() lets node finish them)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def aws(server, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    extra = ["--only-show-errors"] if args[0] == "cp" else []
    r = subprocess.run(["/usr/bin/aws", "--endpoint-url", server.url, "s3", *args, *extra],
                       env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"FAIL: aws s3 {' '.join(args)}: {r.stderr}")


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
