"""A tiny PEP 517/660 build backend for the engine's tests.

It builds wheels with the standard library only (zipfile, hashlib, and gcc
for an optional C extension), so the tests can install real packages into
real venvs with `pip install --no-index --no-build-isolation` on a machine
that has neither a package index nor the `wheel` package. Each project
describes itself in tiny.json beside pyproject.toml.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

_ROOT = os.path.dirname(os.path.abspath(__file__))


def _config():
    with open(os.path.join(_ROOT, "tiny.json"), encoding="utf-8") as f:
        return json.load(f)


def _tag(cfg):
    if not cfg.get("ext"):
        return "py3-none-any"
    py = "cp%d%d" % sys.version_info[:2]
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "%s-%s-%s" % (py, py, plat)


def _metadata(cfg):
    return "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: test package\n\n" % (
        cfg["name"], cfg["version"])


def _entry_points(cfg):
    scripts = cfg.get("console_scripts") or {}
    if not scripts:
        return None
    lines = ["[console_scripts]"] + ["%s = %s" % kv for kv in sorted(scripts.items())]
    return "\n".join(lines) + "\n"


def _build_ext(cfg, workdir):
    ext = cfg["ext"]
    out = os.path.join(workdir, ext["module"].replace(".", "/") + sysconfig.get_config_var("EXT_SUFFIX"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-I", sysconfig.get_paths()["include"], "-o", out]
    cmd += [os.path.join(_ROOT, s) for s in ext["sources"]]
    subprocess.check_call(cmd)
    return out


class _Wheel:
    def __init__(self, path):
        self.zf = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.record = []

    def add(self, arcname, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.zf.writestr(arcname, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))

    def close(self, distinfo):
        self.record.append("%s/RECORD,," % distinfo)
        self.zf.writestr(distinfo + "/RECORD", "\n".join(self.record) + "\n")
        self.zf.close()


def _build(wheel_directory, editable):
    cfg = _config()
    name = cfg["name"].replace("-", "_")
    distinfo = "%s-%s.dist-info" % (name, cfg["version"])
    tag = _tag(cfg)
    filename = "%s-%s-%s.whl" % (name, cfg["version"], tag)
    whl = _Wheel(os.path.join(wheel_directory, filename))
    if editable:
        whl.add("__editable__.%s.pth" % name, _ROOT + "\n")
    else:
        for pkg in cfg.get("packages", []):
            pkgdir = os.path.join(_ROOT, pkg)
            for dirpath, dirnames, filenames in os.walk(pkgdir):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for fn in sorted(filenames):
                    if fn.endswith((".py", ".txt", ".json")):
                        full = os.path.join(dirpath, fn)
                        with open(full, "rb") as f:
                            whl.add(os.path.relpath(full, _ROOT).replace(os.sep, "/"), f.read())
        if cfg.get("ext"):
            with tempfile.TemporaryDirectory() as tmp:
                so = _build_ext(cfg, tmp)
                with open(so, "rb") as f:
                    whl.add(os.path.relpath(so, tmp).replace(os.sep, "/"), f.read())
    whl.add(distinfo + "/METADATA", _metadata(cfg))
    whl.add(distinfo + "/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tinybackend\nRoot-Is-Purelib: %s\nTag: %s\n\n"
            % ("false" if cfg.get("ext") else "true", tag))
    eps = _entry_points(cfg)
    if eps:
        whl.add(distinfo + "/entry_points.txt", eps)
    whl.close(distinfo)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("tinybackend builds wheels only")
