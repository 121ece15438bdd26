"""What a Dockerfile's runtime stage makes, reproduced in a directory (no engine here): the paths
it COPYs (root-owned unless `--chown`), the directories its RUN lines create and chown
(`mkdir`, `chown`, `install -d`, `useradd --uid`), WORKDIR, USER, ENV, ENTRYPOINT/CMD and
HEALTHCHECK. An image path `/x` is `<root>/x`; programs the image installs with apt come from
this machine (Pushpin, python3), the backend binary is the one cargo built.
"""
import json
import os
import pathlib
import pwd
import grp
import shlex
import shutil
import stat

import test_infrastructure as infra


class Image:
    def __init__(self, dockerfile, context, built=None):
        """`built`: image path -> host file for `COPY --from=<stage>` (the build stage's output)."""
        self.dockerfile, self.context, self.built = pathlib.Path(dockerfile), pathlib.Path(context), built or {}
        steps = infra.dockerfile(self.dockerfile)
        last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
        self.steps = steps[last + 1:]
        self.users = {"root": 0}
        self.env, self.volumes, self.entrypoint, self.cmd, self.healthcheck = {}, [], [], [], None
        self.workdir, self.user = "/", "root"
        for word, rest in self.steps:
            if word == "ENV":
                self.env.update(_env_pairs(rest))
            elif word == "WORKDIR":
                self.workdir = os.path.join(self.workdir, rest)
            elif word == "USER":
                self.user = rest.split(":")[0]
            elif word == "ENTRYPOINT":
                self.entrypoint = json.loads(rest)
            elif word == "CMD":
                self.cmd = json.loads(rest)
            elif word == "VOLUME":
                self.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
            elif word == "HEALTHCHECK":
                self.healthcheck = rest
            elif word == "RUN":
                for command in _commands(rest):
                    if command and command[0] in ("useradd", "adduser"):
                        self.users[command[-1]] = _uid_of(command)

    def uid(self, user=None):
        """The numeric uid of `user` (default: the image's USER): useradd --uid in the image, or
        the system account a package creates (Debian's pushpin package: `pushpin`)."""
        user = user or self.user
        if user.isdigit():
            return int(user)
        if user in self.users and self.users[user] is not None:
            return self.users[user]
        return pwd.getpwnam(user).pw_uid

    def gid(self, user=None):
        user = user or self.user
        try:
            return grp.getgrnam(user).gr_gid
        except KeyError:
            return self.uid(user)

    def build(self, root):
        """Lays the image's files out under `root` (as root, like the image's layers)."""
        root = pathlib.Path(root)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        workdir = "/"
        for word, rest in self.steps:
            if word == "WORKDIR":
                workdir = os.path.join(workdir, rest)
                _mkdir(root, workdir)
            elif word == "RUN":
                for command in _commands(rest):
                    self._run(root, workdir, command)
            elif word == "COPY":
                self._copy(root, workdir, shlex.split(rest))
            elif word == "VOLUME":
                for path in (json.loads(rest) if rest.startswith("[") else rest.split()):
                    _mkdir(root, os.path.join(workdir, path))
        return root

    def _copy(self, root, workdir, args):
        flags = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--")}
        paths = [a for a in args if not a.startswith("--")]
        *sources, dest = paths
        dest = os.path.join(workdir, dest)
        owner = flags.get("--chown")
        for source in sources:
            src = self.built[source] if "--from" in flags else self.context / source
            target = root / dest.lstrip("/")
            if dest.endswith("/") or len(sources) > 1 or (target.is_dir() and not src.is_dir()):
                target = target / pathlib.Path(source).name
            _mkdir(root, str(target.parent.relative_to(root)))
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            elif "--from" in flags:
                os.symlink(src, target)  # the cargo-built binary, not copied (hundreds of MB)
            else:
                shutil.copy(src, target)
            for path in [target, *(target.rglob("*") if target.is_dir() else [])]:
                if not path.is_symlink():  # COPY keeps the source's mode
                    path.chmod(0o755 if path.is_dir() else path.stat().st_mode & 0o755)
                if owner:
                    self._chown(path, owner)

    def _run(self, root, workdir, command):
        if not command:
            return
        name, args = command[0], command[1:]
        rel = lambda p: os.path.join(workdir, p)
        if name == "mkdir":
            for p in (a for a in args if not a.startswith("-")):
                _mkdir(root, rel(p))
        elif name == "install" and "-d" in args:
            owner = args[args.index("-o") + 1] if "-o" in args else None
            skip = {args.index(f) + 1 for f in ("-o", "-g", "-m") if f in args}
            for i, p in enumerate(args):
                if not p.startswith("-") and i not in skip:
                    _mkdir(root, rel(p))
                    if owner:
                        self._chown(root / rel(p).lstrip("/"), owner)
        elif name == "chown":
            operands = [a for a in args if not a.startswith("-")]
            owner, paths = operands[0], operands[1:]
            for p in paths:
                target = root / rel(p).lstrip("/")
                _mkdir(root, rel(p)) if not target.exists() else None
                for path in [target, *(target.rglob("*") if "-R" in args else [])]:
                    self._chown(path, owner)
        elif name == "chmod":
            mode, *paths = [a for a in args if not a.startswith("-")]
            for p in paths:
                (root / rel(p).lstrip("/")).chmod(int(mode, 8))

    def _chown(self, path, owner):
        user, _, group = owner.partition(":")
        os.lchown(path, self.uid(user), self.gid(group or user))


def _mkdir(root, path):
    target = pathlib.Path(root) / path.lstrip("/")
    for parent in [*reversed(target.relative_to(root).parents), target.relative_to(root)]:
        p = pathlib.Path(root) / parent
        if not p.exists():
            p.mkdir()
            p.chmod(0o755)
    return target


def _env_pairs(rest):
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def _commands(rest):
    """The simple commands of a RUN line (split at && ; ||), each as argv."""
    out, current = [], []
    for word in shlex.split(rest.replace(";", " ; ")):
        if word in ("&&", ";", "||"):
            out.append(current)
            current = []
        else:
            current.append(word)
    out.append(current)
    return out


def _uid_of(command):
    for flag in ("--uid", "-u"):
        if flag in command:
            return int(command[command.index(flag) + 1])
        for word in command:
            if word.startswith(flag + "="):
                return int(word.split("=", 1)[1])
    return None


def writable_by(path, uid, gid):
    """Whether uid/gid may create files in `path` (owner, group or other write bit)."""
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)
