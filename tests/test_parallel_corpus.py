"""scripts/build_parallel_corpus.py on archives made here: a wheel with .po and .mo catalogs and a .deb.

No network: the archives are written by the test, and the script reads them with --archives.
"""

import importlib.util
import io
import json
import struct
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_parallel_corpus", ROOT / "scripts" / "build_parallel_corpus.py")
bpc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bpc  # dataclasses look their module up
_spec.loader.exec_module(bpc)

HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'

ADMIN_PO = HEADER + r'''#: views.py:1
msgid "Save and continue editing"
msgstr "Sichern und weiter bearbeiten"

#, fuzzy
msgid "Delete selected objects"
msgstr "Ausgewählte Objekte entfernen"

#, python-format
msgid "%(count)d object deleted"
msgid_plural "%(count)d objects deleted"
msgstr[0] "%(count)d Objekt gelöscht"
msgstr[1] "%(count)d Objekte gelöscht"

msgid "%(name)s: %(value)s"
msgstr "%(name)s: %(value)s"

msgid ""
"A multi-line\n"
"message   with\tspaces"
msgstr "Eine mehrzeilige\n Nachricht  mit Leerzeichen"

#, python-format
msgid "Hello %(user)s"
msgstr "Hallo"

msgid "Untranslated"
msgstr ""

msgid "Status"
msgstr "Status"

msgctxt "verb"
msgid "Save and continue editing"
msgstr "Sichern und weiter bearbeiten"

msgid "Say \"yes\""
msgstr "Sag „ja“"

#~ msgid "Old message"
#~ msgstr "Alte Nachricht"
''' + 'msgid "' + "word " * 60 + '"\nmsgstr "' + "Wort " * 60 + '"\n'


def write_mo(pairs: list[tuple[str, str]]) -> bytes:
    """A little-endian GNU .mo (header, two offset tables, then the strings), sorted by msgid."""
    pairs = sorted((o.encode(), t.encode()) for o, t in pairs)
    n, blob = len(pairs), b""
    start = 28 + 16 * n
    otab, ttab = [], []
    for o, _ in pairs:
        otab.append((len(o), start + len(blob))); blob += o + b"\0"
    for _, t in pairs:
        ttab.append((len(t), start + len(blob))); blob += t + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    return head + b"".join(struct.pack("<2I", *e) for e in otab + ttab) + blob


MO_PAIRS = [("", "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"),
            ("Open the file", "Die Datei öffnen"),
            ("menu\x04Quit the program", "Das Programm beenden"),
            ("%d file\x00%d files", "%d Datei\x00%d Dateien"),
            ("{count} new messages", "{count} neue Nachrichten")]


def make_wheel(path: Path, name: str, catalogs: dict[str, bytes], licence="License-Expression: BSD-3-Clause") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.4\nName: {name}\nVersion: 1.0\n{licence}\n")
        for member, data in catalogs.items():
            zf.writestr(member, data)
    return path


def make_deb(path: Path, mo: bytes, copyright_text: str) -> Path:
    """A .deb: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    def tar(files):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name); info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    members = {"debian-binary": b"2.0\n", "control.tar.xz": tar({"./control": b"Package: tool\n"}),
               "data.tar.xz": tar({"./usr/share/locale/de/LC_MESSAGES/tool.mo": mo,
                                   "./usr/share/doc/tool/copyright": copyright_text.encode()})}
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)
    return path


def test_po_extraction_filters_and_plurals(tmp_path):
    wheel = make_wheel(tmp_path / "admin-1.0-py3-none-any.whl", "admin", {
        "admin/locale/de/LC_MESSAGES/django.po": ADMIN_PO.encode(),
        "admin/locale/de/LC_MESSAGES/django.mo": write_mo([("", ""), ("Only in the mo", "Nur im mo")]),
        "admin/locale/fr/LC_MESSAGES/django.po": HEADER.encode() + b'msgid "Save"\nmsgstr "Enregistrer"\n',
        "admin/locale/de_CH/LC_MESSAGES/django.po": HEADER.encode() + b'msgid "Street"\nmsgstr "Strasse"\n',
        "admin/locale/de/LC_MESSAGES/broken.mo": write_mo(MO_PAIRS)[:30]})
    archive = bpc.read_archive(wheel)
    assert (archive.name, archive.version, archive.licence) == ("admin", "1.0", "BSD-3-Clause")
    broken, catalog = bpc.catalogs_of(archive)   # the .po wins over its .mo; fr and de_CH are not German
    assert broken.path.endswith("broken.mo") and "truncated .mo" in broken.error and not broken.messages
    assert catalog.path.endswith("django.po") and catalog.nplurals == 2
    pairs, dropped = bpc.catalog_pairs(catalog, bpc.Filters())
    assert pairs == [("Save and continue editing", "Sichern und weiter bearbeiten"),
                     ("%(count)d object deleted", "%(count)d Objekt gelöscht"),
                     ("%(count)d objects deleted", "%(count)d Objekte gelöscht"),
                     ("A multi-line message with spaces", "Eine mehrzeilige Nachricht mit Leerzeichen"),
                     ('Say "yes"', "Sag „ja“")]
    assert dropped == {"fuzzy": 1, "no_text": 1, "placeholders": 1, "untranslated": 1, "identical": 1,
                       "duplicate": 1, "long": 1}


def test_mo_reader_keeps_plurals_and_drops_context(tmp_path):
    wheel = make_wheel(tmp_path / "files-1.0-py3-none-any.whl", "files",
                       {"files/locale/de/LC_MESSAGES/files.mo": write_mo(MO_PAIRS)})
    (catalog,) = bpc.catalogs_of(bpc.read_archive(wheel))
    pairs, _ = bpc.catalog_pairs(catalog, bpc.Filters())
    assert sorted(pairs) == sorted([("Open the file", "Die Datei öffnen"), ("Quit the program", "Das Programm beenden"),
                                    ("%d file", "%d Datei"), ("%d files", "%d Dateien"),
                                    ("{count} new messages", "{count} neue Nachrichten")])


def test_plural_entries_need_two_forms():
    msg = bpc.Message("%d file", ["%d Datei", "%d Dateien"], "%d files")
    assert bpc.message_pairs(msg, 2) == [("%d file", "%d Datei"), ("%d files", "%d Dateien")]
    assert bpc.message_pairs(msg, 3) == "plural_forms"


def test_placeholders_and_text():
    assert bpc.placeholders("%(a)s and %s, {0} {name!r} {n:,} %1 100%% done") == \
        {"%(a)s": 1, "%s": 1, "{0}": 1, "{name!r}": 1, "{n:,}": 1, "%1": 1}
    assert bpc.clean_pair("%s of %s", "%s von %s", bpc.Filters()) == ("%s of %s", "%s von %s")
    assert bpc.clean_pair("%s of %s", "%s von", bpc.Filters()) == "placeholders"
    assert bpc.clean_pair("<b>%(n)s</b>:", "<b>%(n)s</b>:", bpc.Filters()) == "no_text"
    assert bpc.clean_pair("Fifty words", " ".join(["Wort"] * 51), bpc.Filters()) == "long"


def test_deb_catalog_and_licence(tmp_path):
    deb = make_deb(tmp_path / "tool_2.1-3_amd64.deb", write_mo(MO_PAIRS[:2]),
                   "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                   "Files: *\nLicense: GPL-2+\n\nFiles: lib/*\nLicense: LGPL-2.1+\n\nFiles: po/*\nLicense: GPL-3+\n")
    archive = bpc.read_archive(deb)
    assert (archive.name, archive.version, archive.licence) == ("tool", "2.1-3", "GPL-3+")  # the po/* paragraph
    (catalog,) = bpc.catalogs_of(archive)
    assert catalog.path == "usr/share/locale/de/LC_MESSAGES/tool.mo"
    assert bpc.catalog_pairs(catalog, bpc.Filters())[0] == [("Open the file", "Die Datei öffnen")]


def corpus_archives(tmp_path, n=20):
    """n one-catalog wheels of 10 own messages each, all sharing "Save changes" (two German variants)."""
    tmp_path.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        body = "".join(f'msgid "Message {i} number {j}"\nmsgstr "Nachricht {i} Nummer {j}"\n\n' for j in range(10))
        body += 'msgid "Save changes"\nmsgstr "%s"\n' % ("Änderungen sichern" if i % 2 else "Änderungen speichern")
        paths.append(make_wheel(tmp_path / f"pkg{i}-1.0-py3-none-any.whl", f"pkg{i}",
                                {f"pkg{i}/locale/de/LC_MESSAGES/django.po": (HEADER + body).encode()}))
    return paths


def test_split_by_catalog_keeps_catalogs_whole_and_strings_disjoint(tmp_path):
    archives = [bpc.read_archive(p) for p in corpus_archives(tmp_path)]
    splits, prov = bpc.build(archives, bpc.Filters(), valid_frac=0.2, test_frac=0.2)
    split_of = {rec["package"]: rec["catalogs"][0]["split"] for rec in prov["packages"]}
    assert {"train", "valid", "test"} <= set(split_of.values())
    for split, pairs in splits.items():      # every pair of a catalog is in that catalog's split
        for en, de in pairs:
            if en.startswith("Message"):
                assert split_of[f"pkg{en.split()[1]}"] == split
    for side in (0, 1):
        seen = [{p[side] for p in pairs} for pairs in splits.values()]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    # "Save changes" stays only in the first held-out split, once per German variant found there
    in_test = [i for i in range(20) if split_of[f"pkg{i}"] == "test"]
    shared = sorted(de for s, pairs in splits.items() for en, de in pairs if en == "Save changes")
    assert shared == sorted({"Änderungen sichern" if i % 2 else "Änderungen speichern" for i in in_test})
    assert prov["dropped_across_catalogs"] == {"in_test": 20 - len(in_test), "duplicate": len(in_test) - len(shared)}
    assert sum(s["pairs"] for s in prov["splits"].values()) == 200 + len(shared)
    assert prov["splits"]["test"]["pairs"] <= 0.2 * 220 and prov["splits"]["valid"]["pairs"] <= 0.2 * 220


def test_assign_splits_is_independent_of_order_and_caps_heldout():
    sizes = {f"c{i}": 10 + i for i in range(30)} | {"huge": 1000, "big": 50}   # big > a quarter of 178.5
    a = bpc.assign_splits(sizes, 0.1, 0.1)
    b = bpc.assign_splits(dict(reversed(list(sizes.items()))), 0.1, 0.1)
    assert a == b and a["huge"] == a["big"] == "train"
    total = sum(sizes.values())
    for split in ("valid", "test"):
        assert 0 < sum(n for k, n in sizes.items() if a[k] == split) <= 0.1 * total


def test_check_disjoint_refuses_overlap():
    with pytest.raises(RuntimeError, match="train and test"):
        bpc.check_disjoint({"train": [("a", "b")], "valid": [], "test": [("a", "c")]})


def test_cli_writes_aligned_files_and_refuses_existing_out(tmp_path, capsys):
    corpus_archives(tmp_path / "in")
    out = tmp_path / "out"
    bpc.main(["--archives", str(tmp_path / "in"), "--out", str(out), "--valid-frac", "0.2", "--test-frac", "0.2"])
    prov = json.loads((out / "provenance.json").read_text())
    for split in ("train", "valid", "test"):
        en = (out / f"{split}.en").read_text().splitlines()
        de = (out / f"{split}.de").read_text().splitlines()
        assert len(en) == len(de) == prov["splits"][split]["pairs"] > 0
        assert prov["splits"][split]["tokens_de"] == sum(len(line.split()) for line in de)
    assert {r["licence"] for r in prov["packages"]} == {"BSD-3-Clause"} and len(prov["packages"][0]["sha256"]) == 64
    assert "test:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        bpc.main(["--archives", str(tmp_path / "in"), "--out", str(out)])
    assert exit_info.value.code == 2 and "exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:   # the wheels are not Debian packages: nothing to build
        bpc.main(["--archives", str(tmp_path / "in"), "--out", str(tmp_path / "none"), "--sources", "debian"])
    assert exit_info.value.code == 2 and "no German pairs" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
