#!/usr/bin/env python3
"""hangfs: a pass-through FUSE file system that hangs on command.

    hangfs.py BACKING MOUNTPOINT --control FILE [--state FILE] [--max-hang S]

Mounts BACKING at MOUNTPOINT (allow_other, direct I/O, no attribute or entry
cache, and the kernel's cached pages dropped as it hangs: every operation
reaches this process). While the control file FILE exists,
EVERY operation on the mount (lookup, getattr, open, read, write, fsync,
statfs, readdir, release, ...) blocks, as on a hung NFS or iSCSI mount; when
FILE is removed, the blocked operations go on and pass through again.

The state file (FILE.state unless --state) says `open` or `hung` once the
change has taken effect, and `unmounted` at the end; blocked operations are
logged on standard error. Safety nets, so a test never leaves a hung mount
behind: a hang is released by itself after --max-hang seconds (default 60),
and when the parent process dies the hang is released, the mount is detached
(umount -l) and this process exits.

Stop it by releasing the hang and unmounting: `fusermount3 -u -z MOUNTPOINT`
or `umount -l MOUNTPOINT`. Needs fusepy (Debian: python3-fusepy, which
installs the module `fusepy`; PyPI: fusepy, module `fuse`) and libfuse2;
run it as root (crates/ringcast/tests/hung_disk.rs does).
"""

import argparse
import errno
import os
import subprocess
import sys
import threading
import time

try:
    import fusepy as fuse  # Debian's python3-fusepy
except ImportError:
    import fuse  # PyPI's fusepy
FUSE, FuseOSError, Operations = fuse.FUSE, fuse.FuseOSError, fuse.Operations

# How often the control file and the parent are looked at.
POLL_S = 0.01
# utimensat's special nanosecond values (fusepy passes them on as times).
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def log(msg):
    sys.stderr.write("hangfs %.3f: %s\n" % (time.time(), msg))
    sys.stderr.flush()


def write_state(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(state + "\n")
    os.replace(tmp, path)


def detach(mountpoint):
    """Detaches the mount at once, whatever still uses it."""
    for cmd in (["fusermount3", "-u", "-z", mountpoint], ["umount", "-l", mountpoint],
                ["fusermount", "-u", "-z", mountpoint]):
        try:
            if subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return True
        except OSError:
            pass
    return False


class Gate:
    """Open, or hung while the control file exists."""

    def __init__(self, control, state, max_hang, mountpoint):
        self.control = control
        self.state = state
        self.max_hang = max_hang
        self.mountpoint = mountpoint
        self.opened = threading.Event()
        self.opened.set()
        self.lock = threading.Lock()
        self.blocked = 0
        self.hung_since = None
        self.parent = os.getppid()

    def passage(self, op, path):
        """Blocks while the gate is hung."""
        if self.opened.is_set():
            return
        with self.lock:
            self.blocked += 1
            n = self.blocked
        if n <= 50 or n % 100 == 0:
            try:
                pid = fuse.fuse_get_context()[2]
            except Exception:  # the context is a libfuse detail; the log can do without
                pid = "?"
            log("blocked #%d: %s %s (pid %s)" % (n, op, path, pid))
        self.opened.wait()

    def drop_cache(self):
        """Drops the kernel's cached pages of every file on the mount, so
        that reads of pages read before the hang reach this process (and
        block) too; only stat and read-only opens, while still open."""
        for dirpath, _, files in os.walk(self.mountpoint):
            for name in files:
                try:
                    fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    def watch(self):
        """The control loop: follows the control file and the parent."""
        while True:
            if os.getppid() != self.parent:
                log("the parent process died: releasing, detaching, exiting")
                self.opened.set()
                detach(self.mountpoint)
                try:
                    write_state(self.state, "unmounted")
                except OSError:
                    pass
                os._exit(0)
            hung = os.path.exists(self.control)
            now = time.monotonic()
            if hung and self.hung_since is not None and now - self.hung_since > self.max_hang:
                log("hung for over %.0f s: releasing by itself" % self.max_hang)
                try:
                    os.unlink(self.control)
                except OSError:
                    pass
                hung = False
            if hung and self.opened.is_set():
                self.drop_cache()
                self.hung_since = now
                with self.lock:
                    self.blocked = 0
                self.opened.clear()
                write_state(self.state, "hung")
                log("hung: every operation now blocks")
            elif not hung and not self.opened.is_set():
                took = now - self.hung_since
                self.hung_since = None
                self.opened.set()
                write_state(self.state, "open")
                log("released after %.2f s; %d operations were blocked" % (took, self.blocked))
            time.sleep(POLL_S)


class HangFs(Operations):
    """Passes every operation through to `root`, each one through the gate."""

    use_ns = True
    # Without it libfuse 2 drops a change of one time only (futimens of the
    # modification time alone, as File::set_modified does), silently.
    flag_utime_omit_ok = 1

    def __init__(self, root, gate):
        self.root = os.path.realpath(root)
        self.gate = gate

    def __call__(self, op, *args):
        if op not in ("init", "destroy"):
            self.gate.passage(op, args[0] if args else "")
        return super().__call__(op, *args)

    def _full(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def init(self, path):
        write_state(self.gate.state, "open")
        log("mounted %s on %s" % (self.root, self.gate.mountpoint))

    def access(self, path, mode):
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._full(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._full(path), uid, gid)

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        attrs = {
            key: getattr(st, key)
            for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                        "st_blocks", "st_ino", "st_dev")
        }
        attrs["st_atime"] = st.st_atime_ns
        attrs["st_mtime"] = st.st_mtime_ns
        attrs["st_ctime"] = st.st_ctime_ns
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._full(path))

    def readlink(self, path):
        return os.readlink(self._full(path))

    def mknod(self, path, mode, dev):
        os.mknod(self._full(path), mode, dev)

    def mkdir(self, path, mode):
        os.mkdir(self._full(path), mode)

    def rmdir(self, path):
        os.rmdir(self._full(path))

    def unlink(self, path):
        os.unlink(self._full(path))

    def symlink(self, target, source):
        os.symlink(source, self._full(target))

    def link(self, target, source):
        os.link(self._full(source), self._full(target))

    def rename(self, old, new):
        os.rename(self._full(old), self._full(new))

    def statfs(self, path):
        sv = os.statvfs(self._full(path))
        return {
            key: getattr(sv, key)
            for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                        "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        }

    def utimens(self, path, times=None):
        full = self._full(path)
        if times is None:
            os.utime(full)
            return
        st = os.lstat(full)
        now = time.time_ns()

        def pick(value, current):
            return current if value == UTIME_OMIT else now if value == UTIME_NOW else value

        os.utime(full, ns=(pick(times[0], st.st_atime_ns), pick(times[1], st.st_mtime_ns)))

    def open(self, path, flags):
        return os.open(self._full(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._full(path), length)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def fsyncdir(self, path, datasync, fh):
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", required=True,
                   help="while this file exists, every operation blocks")
    p.add_argument("--state", help="where the state is written (default: CONTROL.state)")
    p.add_argument("--max-hang", type=float, default=60.0,
                   help="seconds after which a hang releases by itself")
    a = p.parse_args()
    mountpoint = os.path.realpath(a.mountpoint)
    gate = Gate(os.path.realpath(a.control), a.state or a.control + ".state", a.max_hang,
                mountpoint)
    threading.Thread(target=gate.watch, daemon=True).start()
    FUSE(HangFs(a.backing, gate), mountpoint, foreground=True, allow_other=True,
         direct_io=True, attr_timeout=0, entry_timeout=0, negative_timeout=0,
         fsname="hangfs", subtype="hangfs")
    write_state(gate.state, "unmounted")
    log("unmounted %s" % mountpoint)


if __name__ == "__main__":
    main()
