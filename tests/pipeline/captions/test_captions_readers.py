"""Caption readers: each real source format, written small and messy, to the caption table."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.cache.store import Cache
from uncollapse.errors import InputError, ToolError
from uncollapse.pipeline.captions import build_captions, detect_format, read_captions

REPO = Path(__file__).resolve().parents[3]
COCO_1000 = REPO / "data" / "coco" / "captions_val2017_1000.json"


@pytest.fixture
def caption_cache(tmp_path) -> Cache:
    return Cache(tmp_path / "cache")


def finding(report, code):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, f"expected one {code} finding, got {report.codes()}"
    return found[0]


def captions_of(table: pl.DataFrame, image_id: str) -> list[str]:
    return table.filter(pl.col("image_id") == image_id).sort("caption_idx")["caption"].to_list()


# Token files ----------------------------------------------------------------------------------

MESSY_TOKENS = (
    "\ufeff"  # a BOM before the first line
    "1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .\r\n"
    "1001773457_577c3a7d70.jpg#0\tA black dog and a spotted dog are fighting\r\n"
    "\r\n"
    "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing up a set of stairs .\r\n"
    "this line has no image and no tab\r\n"
    "1001773457_577c3a7d70.jpg#1\t  A black dog and a tri-colored dog playing .   \r\n"
    "1000268201_693b08cb0e.jpg#2\tA little girl climbing into a wooden playhouse .\r\n"
    "1000268201_693b08cb0e.jpg 3 missing the hash\r\n"
    "1000268201_693b08cb0e.jpg#3\tA little girl climbing the stairs to her playhouse .\r\n"
    "\r\n\r\n"
)


def test_token_file_groups_out_of_order_captions_by_file_name(caption_contract, tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_bytes(MESSY_TOKENS.encode("utf-8"))

    table, report = read_captions(path)

    assert report.stats["format"] == "tokens"
    assert table.schema == caption_contract
    assert captions_of(table, "1000268201_693b08cb0e") == [
        "A child in a pink dress is climbing up a set of stairs .",
        "A girl going into a wooden building .",
        "A little girl climbing into a wooden playhouse .",
        "A little girl climbing the stairs to her playhouse .",
    ]
    assert captions_of(table, "1001773457_577c3a7d70") == [
        "A black dog and a spotted dog are fighting",
        "A black dog and a tri-colored dog playing .",
    ]
    # Line numbers are those of the file (BOM, blank lines and CRLF do not shift them).
    rows = dict(zip(table["caption"], table["source_row"], strict=True))
    assert rows["A girl going into a wooden building ."] == 1
    assert rows["A child in a pink dress is climbing up a set of stairs ."] == 4
    assert rows["A little girl climbing the stairs to her playhouse ."] == 9
    assert set(table["image_path"]) == {"1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg"}
    assert table["split"].null_count() == table.height
    # No caption keeps a CR, a BOM or surrounding spaces.
    assert table.filter(pl.col("caption") != pl.col("caption").str.strip_chars()).height == 0
    assert not any("\r" in c or "\ufeff" in c for c in table["caption"])


words = st.text(alphabet="abcdefghij ,.-'", min_size=1, max_size=30).filter(
    lambda t: t.strip() != "")


@settings(max_examples=60, deadline=None)
@given(images=st.dictionaries(st.from_regex(r"[0-9]{4,10}(_[0-9a-f]{4})?", fullmatch=True),
                              st.lists(words, min_size=1, max_size=7), min_size=1, max_size=12),
       seed=st.integers(0, 2**32 - 1), crlf=st.booleans(), bom=st.booleans())
def test_token_file_grouping_property(tmp_path_factory, images, seed, crlf, bom):
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = [f"{image}.jpg#{n}\t{caption}" for image, captions in images.items()
             for n, caption in enumerate(captions)]
    lines = [lines[i] for i in rng.permutation(len(lines))]
    blanks = rng.integers(0, len(lines) + 1, size=3)
    for at in sorted(blanks, reverse=True):
        lines.insert(int(at), "")
    text = ("\r\n" if crlf else "\n").join(lines) + "\n"
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())

    table, report = read_captions(path, format="tokens")

    assert set(report.codes()) <= {"SOURCE_WHITESPACE_STRIPPED", "SOURCE_CAPTION_COUNT_UNUSUAL"}
    assert table.height == sum(len(c) for c in images.values())
    for image, captions in images.items():
        assert captions_of(table, image) == [c.strip() for c in captions]
    pairs = dict(table.select("image_id", "match_id").unique().iter_rows())
    assert pairs == {image: i for i, image in enumerate(sorted(images))}
    # Each source_row points back at the line the caption came from.
    for row in table.head(5).iter_rows(named=True):
        source_line = lines[row["source_row"] - 1]
        assert source_line.startswith(f"{row['image_id']}.jpg#{row['caption_idx']}\t")


def test_token_file_reports_malformed_lines_with_their_numbers(tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_bytes(MESSY_TOKENS.encode("utf-8"))

    table, report = read_captions(path)

    malformed = finding(report, "SOURCE_MALFORMED_LINE")
    assert malformed.severity == "warning"
    assert malformed.count == 2
    assert [e["line"] for e in malformed.examples] == [5, 8]
    assert malformed.examples[0]["text"] == "this line has no image and no tab"
    assert malformed.examples[0]["file"] == str(path)
    assert table.height == 6  # 8 caption-like lines, 2 malformed ones skipped
    stripped = finding(report, "SOURCE_WHITESPACE_STRIPPED")
    assert stripped.count == 1
    assert stripped.examples[0]["source_row"] == 6


def test_token_file_counts_whitespace_after_the_tab(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("a.jpg#0\t  leading spaces\na.jpg#1\tclean\nb.jpg#0\tclean too\n"
                    "b.jpg#1\ttrailing tab\t\n")

    table, report = read_captions(path)

    assert captions_of(table, "a") == ["leading spaces", "clean"]
    assert captions_of(table, "b") == ["clean too", "trailing tab"]
    stripped = finding(report, "SOURCE_WHITESPACE_STRIPPED")
    assert stripped.count == 2
    assert [e["source_row"] for e in stripped.examples] == [1, 4]


def test_clean_token_file_has_no_irregularities(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"{img}.jpg#{n}\t{img} caption {n}\n"
                            for img in ("111", "222") for n in range(5)))

    table, report = read_captions(path)

    assert report.findings == []
    assert table.height == 10
    assert table.group_by("match_id").len()["len"].to_list() == [5, 5]


def test_token_file_images_with_more_or_fewer_captions_are_kept_and_reported(tmp_path):
    lines = [f"{img}.jpg#{n}\tcaption {n} of {img}" for img in ("10", "20", "30")
             for n in range(5)]
    lines += ["40.jpg#0\tthe only caption of 40", "10.jpg#5\ta sixth caption of 10"]
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(lines) + "\n")

    table, report = read_captions(path)

    sizes = dict(table.group_by("image_id").len().iter_rows())
    assert sizes == {"10": 6, "20": 5, "30": 5, "40": 1}
    unusual = finding(report, "SOURCE_CAPTION_COUNT_UNUSUAL")
    assert unusual.count == 2
    assert {e["image_id"]: e["captions"] for e in unusual.examples} == {"10": 6, "40": 1}


def test_only_cr_and_lf_end_lines(tmp_path):
    # Form feeds and Unicode line separators occur inside scraped captions; they are text.
    path = tmp_path / "tokens.txt"
    path.write_text("1.jpg#0\tA dog\u2028runs\n1.jpg#1\tA form\x0cfeed\r2.jpg#0\tok\r\n"
                    "2.jpg#1\tfine\x85too\n", newline="")

    table, report = read_captions(path)

    assert table.sort("source_row").select("caption", "source_row").rows() == [
        ("A dog\u2028runs", 1), ("A form\x0cfeed", 2), ("ok", 3), ("fine\x85too", 4)]
    assert report.findings == []


def test_caption_numbers_that_do_not_fit_are_malformed_lines(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("1.jpg#0\tfirst\n1.jpg#70000\ttoo big\n1.jpg#99999999999999999999\thuge\n"
                    "1.jpg#1\tsecond\n")

    table, report = read_captions(path)

    assert captions_of(table, "1") == ["first", "second"]
    assert [e["line"] for e in finding(report, "SOURCE_MALFORMED_LINE").examples] == [2, 3]


def test_token_file_empty_caption_is_skipped_and_reported(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("7.jpg#0\ta caption\n7.jpg#1\t   \n7.jpg#2\tanother one\n")

    table, report = read_captions(path)

    assert captions_of(table, "7") == ["a caption", "another one"]
    empty = finding(report, "SOURCE_EMPTY_CAPTION")
    assert empty.count == 1
    assert empty.examples[0]["source_row"] == 2


def test_token_file_duplicate_caption_numbers_are_kept_and_reported(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("5.jpg#0\tfirst\n5.jpg#1\tsecond\n5.jpg#0\tfirst again\n")

    table, report = read_captions(path)

    assert table.height == 3
    dup = finding(report, "SOURCE_DUPLICATE_CAPTION_NUMBER")
    assert dup.count == 2
    assert [e["source_row"] for e in dup.examples] == [1, 3]


# Split list files -----------------------------------------------------------------------------

def write_flickr8k(tmp_path: Path) -> dict[str, Path]:
    tokens = tmp_path / "Flickr8k.token.txt"
    tokens.write_text("".join(f"{img}.jpg#{n}\t{img} caption {n}\n"
                              for n in range(5) for img in ("101", "102", "103", "104")))
    train = tmp_path / "Flickr_8k.trainImages.txt"
    train.write_text("101.jpg\n102.jpg\n")
    test = tmp_path / "Flickr_8k.testImages.txt"
    # 102 is also in train; 999 has no captions; 104 is in no list at all.
    test.write_text("\n103.jpg\r\n102.jpg\r\n999.jpg\r\n")
    return {"tokens": tokens, "train": train, "test": test}


def test_split_files_assign_splits_and_report_unlisted_and_doubly_listed(tmp_path):
    files = write_flickr8k(tmp_path)

    table, report = read_captions(files["tokens"],
                                  split_files={"train": files["train"], "test": files["test"]})

    splits = dict(table.group_by("image_id").agg(pl.col("split").unique()).select(
        "image_id", pl.col("split").list.first()).iter_rows())
    assert splits == {"101": "train", "102": "train", "103": "test", "104": None}
    unlisted = finding(report, "SOURCE_IMAGE_NOT_IN_SPLIT")
    assert unlisted.count == 1
    assert unlisted.examples[0]["image_id"] == "104"
    assert unlisted.examples[0]["line"] == 4  # first line of 104 in the token file
    twice = finding(report, "SOURCE_IMAGE_IN_TWO_SPLITS")
    assert twice.count == 1
    assert twice.examples[0]["image_id"] == "102"
    assert twice.examples[0]["split"] == ["train", "test"]
    orphan = finding(report, "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS")
    assert orphan.examples[0] == {"image_id": "999", "split": "test", "file": str(files["test"]),
                                  "line": 4}
    assert table.height == 20  # nothing dropped


def test_name_repeated_in_one_list_is_not_in_two_splits(tmp_path):
    files = write_flickr8k(tmp_path)
    files["train"].write_text("101.jpg\n102.jpg\n101.jpg\n103.jpg\n104.jpg\n")

    table, report = read_captions(files["tokens"], split_files={"train": files["train"]})

    assert table["split"].unique().to_list() == ["train"]
    assert report.codes() == []


def test_split_file_order_decides_and_is_part_of_the_cache_key(tmp_path, caption_cache):
    files = write_flickr8k(tmp_path)

    first = build_captions(files["tokens"], cache=caption_cache,
                           split_files={"train": files["train"], "test": files["test"]})
    second = build_captions(files["tokens"], cache=caption_cache,
                            split_files={"test": files["test"], "train": files["train"]})

    def split_of(built, image_id):
        return built.table().filter(pl.col("image_id") == image_id)["split"].unique().to_list()

    assert split_of(first, "102") == ["train"]
    assert split_of(second, "102") == ["test"]
    assert first.entry.key != second.entry.key


# Flickr30k CSV --------------------------------------------------------------------------------

FLICKR30K_CSV = (
    "image_name| comment_number| comment\n"
    "1000092795.jpg| 0| Two young guys with shaggy hair look at their hands .\n"
    "1000092795.jpg| 1| Two young , White males are outside near many bushes .\n"
    "2199200615.jpg| 4 A dog runs across the grass .\n"
    "2199200615.jpg| 0| A dog is running through the grass .\n"
    "1000092795.jpg| 2| Two men in green shirts are standing in a yard .  \n"
    "2199200615.jpg| 1| A brown dog runs across a grassy field .\n"
)


def test_flickr30k_csv_reads_header_and_reports_the_row_missing_a_separator(caption_contract,
                                                                            tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(FLICKR30K_CSV)

    assert detect_format(str(path)) == "flickr-csv"
    table, report = read_captions(path)

    assert table.schema == caption_contract
    assert captions_of(table, "1000092795") == [
        "Two young guys with shaggy hair look at their hands .",
        "Two young , White males are outside near many bushes .",
        "Two men in green shirts are standing in a yard .",
    ]
    assert captions_of(table, "2199200615") == [
        "A dog is running through the grass .",
        "A brown dog runs across a grassy field .",
    ]
    malformed = finding(report, "SOURCE_MALFORMED_LINE")
    assert malformed.count == 1
    assert malformed.examples[0]["line"] == 4
    assert malformed.examples[0]["text"] == "2199200615.jpg| 4 A dog runs across the grass ."
    # The space after "| " belongs to the separator; only the real stray spaces are counted.
    stripped = finding(report, "SOURCE_WHITESPACE_STRIPPED")
    assert stripped.count == 1
    assert stripped.examples[0]["source_row"] == 6


def test_flickr30k_csv_with_split_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(FLICKR30K_CSV)
    val = tmp_path / "val.txt"
    val.write_text("2199200615.jpg\n")

    table, report = read_captions(path, split_files={"val": val})

    assert table.filter(pl.col("image_id") == "2199200615")["split"].to_list() == ["val", "val"]
    assert finding(report, "SOURCE_IMAGE_NOT_IN_SPLIT").examples[0]["image_id"] == "1000092795"


# COCO caption JSON ----------------------------------------------------------------------------

def coco_json(annotations, images) -> str:
    return json.dumps({"info": {"description": "test"}, "licenses": [],
                       "images": images, "annotations": annotations})


COCO_IMAGES = [{"id": 139, "file_name": "000000000139.jpg", "height": 426, "width": 640},
               {"id": 285, "file_name": "000000000285.jpg", "height": 640, "width": 586},
               {"id": 632, "file_name": "000000000632.jpg", "height": 483, "width": 640}]
COCO_ANNOTATIONS = [
    {"image_id": 285, "id": 30, "caption": "A big burly grizzly bear is show with grass."},
    {"image_id": 139, "id": 12, "caption": "A woman stands in the dining area."},
    {"image_id": 285, "id": 10, "caption": "A brown bear sitting in the grass.\n"},
    {"image_id": 139, "id": 5, "caption": "A room with chairs, a table, and a woman in it."},
    {"image_id": 777, "id": 40, "caption": "A caption of an image not in images[]."},
    {"image_id": 285, "id": 20, "caption": "The large brown bear has a black nose."},
]


def test_coco_json_split_from_file_name_and_caption_order_by_annotation_id(tmp_path):
    path = tmp_path / "captions_val2017.json"
    path.write_text(coco_json(COCO_ANNOTATIONS, COCO_IMAGES))

    assert detect_format(str(path)) == "coco"
    table, report = read_captions(path)

    assert table["split"].unique().to_list() == ["val"]
    assert captions_of(table, "285") == ["A brown bear sitting in the grass.",
                                         "The large brown bear has a black nose.",
                                         "A big burly grizzly bear is show with grass."]
    assert table.filter(pl.col("image_id") == "285")["source_row"].to_list() == [2, 5, 0]
    assert captions_of(table, "139") == ["A room with chairs, a table, and a woman in it.",
                                         "A woman stands in the dining area."]
    assert table.filter(pl.col("image_id") == "139")["image_path"].unique().to_list() == [
        "000000000139.jpg"]
    unknown = finding(report, "SOURCE_UNKNOWN_IMAGE")
    assert unknown.count == 1
    assert unknown.examples[0]["image_id"] == "777"
    assert unknown.examples[0]["annotation"] == 4
    assert table.filter(pl.col("image_id") == "777")["image_path"].to_list() == [None]
    no_captions = finding(report, "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS")
    assert no_captions.examples[0]["image_id"] == "632"
    assert "632" not in table["image_id"].to_list()
    assert finding(report, "SOURCE_WHITESPACE_STRIPPED").examples[0]["image_id"] == "285"


def test_coco_repeated_image_entry_does_not_repeat_captions(tmp_path):
    path = tmp_path / "captions_val2014.json"
    path.write_text(coco_json(COCO_ANNOTATIONS, COCO_IMAGES + COCO_IMAGES[1:2]))

    table, report = read_captions(path)

    assert table.height == len(COCO_ANNOTATIONS)
    assert len(captions_of(table, "285")) == 3
    repeated = finding(report, "SOURCE_DUPLICATE_IMAGE")
    assert repeated.examples[0]["image_id"] == "285"
    assert repeated.examples[0]["image"] == 3


def test_coco_split_override_and_unnamed_split(tmp_path):
    named = tmp_path / "captions_train2014.json"
    named.write_text(coco_json(COCO_ANNOTATIONS[:2], COCO_IMAGES))
    plain = tmp_path / "my_captions.json"
    plain.write_text(coco_json(COCO_ANNOTATIONS[:2], COCO_IMAGES))

    assert read_captions(named)[0]["split"].unique().to_list() == ["train"]
    assert read_captions(named, split="test")[0]["split"].unique().to_list() == ["test"]
    assert read_captions(plain)[0]["split"].to_list() == [None, None]


def test_coco_split_from_file_name_is_part_of_the_cache_key(tmp_path, caption_cache):
    text = coco_json(COCO_ANNOTATIONS[:2], COCO_IMAGES)
    (tmp_path / "captions_val2017.json").write_text(text)
    (tmp_path / "captions_train2017.json").write_text(text)

    val = build_captions(tmp_path / "captions_val2017.json", cache=caption_cache)
    train = build_captions(tmp_path / "captions_train2017.json", cache=caption_cache)

    assert val.table()["split"].unique().to_list() == ["val"]
    assert train.table()["split"].unique().to_list() == ["train"]


def test_bundled_coco_subset(tmp_path, caption_cache):
    built = build_captions(COCO_1000, cache=caption_cache)
    table = built.table()

    assert table.height == 5005
    assert table["image_id"].n_unique() == 1000
    sizes = table.group_by("match_id").len()["len"]
    assert (sizes.min(), sizes.max()) == (5, 6)
    assert int((sizes == 6).sum()) == 5
    assert table["split"].unique().to_list() == ["val"]
    stripped = finding(built.report, "SOURCE_WHITESPACE_STRIPPED")
    assert stripped.count > 0
    assert stripped.count == int(sum(
        a["caption"] != a["caption"].strip()
        for a in json.loads(COCO_1000.read_text())["annotations"]))
    assert table.filter(pl.col("caption") != pl.col("caption").str.strip_chars()).height == 0
    assert finding(built.report, "SOURCE_CAPTION_COUNT_UNUSUAL").count == 5
    assert built.report.stats["images"] == 1000
    # image_id is COCO's image id: the file name holds it zero-padded.
    assert table.filter(pl.col("image_path") != (
        pl.col("image_id").str.zfill(12) + ".jpg")).height == 0


# Karpathy split JSON --------------------------------------------------------------------------

def karpathy_image(filename, split, captions, **extra):
    return {"filename": filename, "split": split, "sentids": list(range(len(captions))),
            "sentences": [{"raw": c, "tokens": c.lower().split(), "imgid": 0, "sentid": i}
                          for i, c in enumerate(captions)], **extra}


def test_karpathy_flickr_ids_are_file_name_stems(tmp_path):
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"dataset": "flickr8k", "images": [
        karpathy_image("2513260012_03d33305cf.jpg", "train", ["A dog .", "A black dog ."],
                       imgid=0),
        karpathy_image("2903617548_d3e38d7f88.jpg", "test", ["Kids play .", "Children ."],
                       imgid=1),
        karpathy_image("3338291921_fe7ae0c8f8.jpg", "val", [], imgid=2),
    ]}))

    assert detect_format(str(path)) == "karpathy"
    table, report = read_captions(path)

    assert captions_of(table, "2513260012_03d33305cf") == ["A dog .", "A black dog ."]
    assert dict(table.select("image_id", "split").unique().iter_rows()) == {
        "2513260012_03d33305cf": "train", "2903617548_d3e38d7f88": "test"}
    assert finding(report, "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS").examples[0]["image_id"] == (
        "3338291921_fe7ae0c8f8")
    assert "0" not in table["image_id"].to_list() and "1" not in table["image_id"].to_list()


def test_karpathy_coco_ids_are_cocoids_and_splits_filter(tmp_path):
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": [
        karpathy_image("COCO_val2014_000000391895.jpg", "test", ["A man rides .", "A bike ."],
                       filepath="val2014", imgid=0, cocoid=391895),
        karpathy_image("COCO_val2014_000000522418.jpg", "restval", ["A woman cuts ."],
                       filepath="val2014", imgid=1, cocoid=522418),
        karpathy_image("COCO_train2014_000000318556.jpg", "train", ["A bathroom .", "A sink ."],
                       filepath="train2014", imgid=2, cocoid=318556),
        karpathy_image("COCO_val2014_000000184613.jpg", "val", ["A boy ."],
                       filepath="val2014", imgid=3, cocoid=184613),
    ]}))

    table, _ = read_captions(path)
    assert dict(table.select("image_id", "split").unique().iter_rows()) == {
        "391895": "test", "522418": "restval", "318556": "train", "184613": "val"}
    assert table.filter(pl.col("image_id") == "391895")["image_path"].to_list() == [
        "val2014/COCO_val2014_000000391895.jpg"] * 2

    kept, report = read_captions(path, splits=["train", "restval"])
    assert sorted(kept["image_id"].unique().to_list()) == ["318556", "522418"]
    left_out = finding(report, "SOURCE_ROWS_OUTSIDE_SPLITS")
    assert left_out.severity == "info"
    # the count is the captions left out (not the splits they are in); one example per split
    assert left_out.count == 3
    assert left_out.message.startswith("3 caption(s) left out")
    assert {e["split"]: e["captions"] for e in left_out.examples} == {"test": 2, "val": 1}
    # match_id is renumbered over what is kept.
    assert sorted(kept["match_id"].unique().to_list()) == [0, 1]


# Hugging Face flickr30k layout ----------------------------------------------------------------

def flickr30k_dataset():
    import datasets

    return datasets.Dataset.from_dict({
        "image": [b"\x89PNG\r\n\x1a\n not really an image", None, b"\xff\xd8 jpeg-ish"],
        "caption": [[f"Two young guys {i} ." for i in range(5)],
                    [f"Several men in hard hats {i} ." for i in range(5)],
                    [f"A child in a pink dress {i} ." for i in range(4)] + ["  padded  "]],
        "sentids": [[str(i) for i in range(5)], [str(i) for i in range(5, 10)],
                    [str(i) for i in range(10, 15)]],
        "split": ["train", "test", "val"],
        "img_id": ["0", "1", "2"],
        "filename": ["1000092795.jpg", "10002456.jpg", "1000268201.jpg"],
    })


def check_flickr30k_table(table: pl.DataFrame, contract: pl.Schema):
    assert table.schema == contract
    assert table.height == 15
    # img_id is a running number in this layout: the id is the file name stem.
    assert sorted(table["image_id"].unique().to_list()) == ["1000092795", "10002456",
                                                             "1000268201"]
    assert dict(table.select("image_id", "split").unique().iter_rows()) == {
        "1000092795": "train", "10002456": "test", "1000268201": "val"}
    assert captions_of(table, "10002456") == [f"Several men in hard hats {i} ." for i in range(5)]
    assert captions_of(table, "1000268201")[-1] == "padded"
    assert table.filter(pl.col("image_id") == "1000092795")["image_path"].unique().to_list() == [
        "1000092795.jpg"]


@pytest.mark.parametrize("layout", ["parquet", "arrow", "arrow-ipc-file", "saved"])
def test_hf_flickr30k_layout(caption_contract, tmp_path, layout):
    dataset = flickr30k_dataset()
    if layout == "parquet":
        source = tmp_path / "flickr30k.parquet"
        dataset.to_parquet(str(source))
    elif layout == "arrow-ipc-file":  # what pyarrow and polars write as .arrow
        source = tmp_path / "flickr30k.arrow"
        dataset.to_polars().write_ipc(source)
    else:
        saved = tmp_path / "saved"
        dataset.save_to_disk(str(saved))
        source = saved if layout == "saved" else next(saved.glob("*.arrow"))

    assert detect_format(str(source)) == "hf"
    table, report = read_captions(source)

    check_flickr30k_table(table, caption_contract)
    assert finding(report, "SOURCE_WHITESPACE_STRIPPED").count == 1


def test_hf_saved_dataset_dict_and_hf_split(tmp_path, caption_cache):
    import datasets

    dataset = flickr30k_dataset()
    folder = tmp_path / "dict"
    datasets.DatasetDict({"test": dataset.select([1]), "train": dataset.select([0, 2])}
                         ).save_to_disk(str(folder))

    assert read_captions(folder)[0].height == 15
    only_test = build_captions(folder, hf_split="test", cache=caption_cache).table()
    assert only_test["image_id"].unique().to_list() == ["10002456"]


def test_hf_layout_with_one_caption_per_row(tmp_path):
    path = tmp_path / "flickr30k_rows.parquet"
    pl.DataFrame({"caption": ["a dog", "a brown dog", "a cat", "a dog again", "a grey cat"],
                  "filename": ["1.jpg", "1.jpg", "2.jpg", "1.jpg", "2.jpg"],
                  "split": ["train"] * 5}).write_parquet(path)

    table, report = read_captions(path)

    assert captions_of(table, "1") == ["a dog", "a brown dog", "a dog again"]
    assert table.filter(pl.col("image_id") == "1")["caption_idx"].to_list() == [0, 1, 2]
    assert table.filter(pl.col("image_id") == "2")["caption_idx"].to_list() == [0, 1]
    assert "SOURCE_DUPLICATE_CAPTION_NUMBER" not in report.codes()


@pytest.mark.parametrize("name", ["flickr30k.arrow", "flickr30k.parquet"])
def test_broken_hf_files_are_input_errors_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not columnar data at all " * 4)

    with pytest.raises(InputError, match=name):
        read_captions(path)


def test_hf_layout_without_caption_column_is_a_tool_error(tmp_path):
    path = tmp_path / "other.parquet"
    pl.DataFrame({"text": ["a"], "label": [1]}).write_parquet(path)

    with pytest.raises(InputError, match="caption"):
        read_captions(path)


def test_hub_id_that_cannot_be_loaded_offline_is_a_tool_error(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so the hub id is surely not a local folder

    assert detect_format("uncollapse-tests/no-such-captions") == "hf"
    with pytest.raises(ToolError, match="uncollapse-tests/no-such-captions.*save_to_disk"):
        build_captions("uncollapse-tests/no-such-captions", cache=Cache(tmp_path / "cache"))


# Detection, ids and the output contract -------------------------------------------------------

def test_undetectable_files_are_tool_errors(tmp_path):
    prose = tmp_path / "notes.txt"
    prose.write_text("These are my notes about the dataset.\nNothing to see.\n")
    other_json = tmp_path / "config.json"
    other_json.write_text('{"learning_rate": 0.1}')

    with pytest.raises(InputError, match=r"notes.txt, line 1: cannot tell the caption format"):
        detect_format(str(prose))
    with pytest.raises(InputError, match="neither COCO"):
        detect_format(str(other_json))
    with pytest.raises(InputError, match="does not exist; expected a regular file or directory"):
        detect_format(str(tmp_path / "missing.txt"))


def test_missing_relative_file_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    for typo in ("data/captions_val2017.json", "flickr/results.csv", "hf/flickr30k.parquet",
                 "Flickr8k/Flickr8k.token.txt"):
        with pytest.raises(InputError, match=f"{typo}: does not exist; expected a regular file "
                                             "or directory"):
            detect_format(typo)
    assert detect_format("nlphuji/flickr30k") == "hf"


def test_explicit_format_overrides_detection(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("not a caption line\n42.jpg#0\ta caption\n42.jpg#1\tanother\n")

    with pytest.raises(InputError):
        detect_format(str(path))
    table, report = read_captions(path, format="tokens")
    assert captions_of(table, "42") == ["a caption", "another"]
    assert finding(report, "SOURCE_MALFORMED_LINE").examples[0]["line"] == 1


def test_image_id_comes_from_the_source_never_the_position(tmp_path):
    names = ["3", "zebra", "0001", "10", "alpha"]
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"{name}.jpg#{n}\t{name} says {n}\n" for n in range(2)
                            for name in names))

    table, _ = read_captions(path)

    assert sorted(table["image_id"].unique().to_list()) == sorted(names)
    for name in names:
        assert captions_of(table, name) == [f"{name} says 0", f"{name} says 1"]


def test_match_id_in_sorted_image_id_order_and_stable_across_runs(tmp_path, caption_cache):
    names = ["b7", "a1", "c3", "a10", "a2"]
    first = tmp_path / "one.txt"
    first.write_text("".join(f"{name}.jpg#{n}\tcaption {n}\n" for name in names
                             for n in range(2)))
    # The same captions in another order.
    second = tmp_path / "two.txt"
    second.write_text("".join(f"{name}.jpg#{n}\tcaption {n}\n" for n in (1, 0)
                              for name in reversed(names)))

    table, _ = read_captions(first)
    pairs = dict(table.select("image_id", "match_id").unique().iter_rows())
    assert pairs == {name: i for i, name in enumerate(sorted(names))}

    again = build_captions(first, cache=caption_cache, rebuild=True).table()
    shuffled, _ = read_captions(second)
    columns = ["image_id", "match_id", "caption_idx", "caption"]
    assert again.select(columns).equals(table.select(columns))
    assert shuffled.select(columns).equals(table.select(columns))


def test_output_parquet_is_plain_and_readable_everywhere(caption_contract, tmp_path, caption_cache):
    import datasets

    path = tmp_path / "Flickr8k.token.txt"
    path.write_bytes(MESSY_TOKENS.encode("utf-8"))
    built = build_captions(path, cache=caption_cache)

    by_polars = pl.read_parquet(built.path)
    assert by_polars.schema == caption_contract
    arrow_schema = pq.read_schema(built.path)
    assert {f.name: str(f.type) for f in arrow_schema} == {
        "image_id": "large_string", "match_id": "int64", "caption_idx": "int16",
        "caption": "large_string", "split": "large_string", "source_row": "int64",
        "image_path": "large_string"}
    assert pq.read_table(built.path).num_rows == 6

    loaded = datasets.load_dataset("parquet", data_files=str(built.path), split="train",
                                   cache_dir=str(tmp_path / "hf-cache"))
    assert loaded.num_rows == 6
    assert loaded.column_names == list(caption_contract)
    assert loaded.features["caption_idx"].dtype == "int16"
    assert sorted(loaded["image_id"]) == sorted(by_polars["image_id"].to_list())

    as_dataset = built.to_dataset()
    assert isinstance(as_dataset, datasets.Dataset)
    assert as_dataset.num_rows == 6
    assert as_dataset.features["match_id"].dtype == "int64"
    assert as_dataset["caption"] == by_polars["caption"].to_list()
    assert as_dataset.select([0])[0] == by_polars.row(0, named=True)
    assert as_dataset.with_format("numpy")[:]["match_id"].tolist() == by_polars[
        "match_id"].to_list()


def test_build_goes_through_the_cache(tmp_path, caption_cache):
    path = tmp_path / "tokens.txt"
    path.write_text("1.jpg#0\tone\n1.jpg#1\tuno\n")

    first = build_captions(path, cache=caption_cache)
    second = build_captions(path, cache=caption_cache)
    assert (first.entry.hit, second.entry.hit) == (False, True)
    assert second.report.to_dict() == first.report.to_dict()

    path.write_text("1.jpg#0\tone\n1.jpg#1\tuno\n2.jpg#0\tdos\n")
    third = build_captions(path, cache=caption_cache)
    assert not third.entry.hit
    assert third.table().height == 3
    assert build_captions(path, cache=caption_cache, splits=["train"]).entry.key != (
        third.entry.key)


def test_unreadable_sources_are_tool_errors(tmp_path):
    latin = tmp_path / "tokens.txt"
    latin.write_bytes("1.jpg#0\tcaf\xe9 au lait\n".encode("latin-1"))
    broken = tmp_path / "captions_val2017.json"
    broken.write_text('{"images": [], "annotations": [\n{"image_id": 1,,}]}')

    with pytest.raises(InputError, match="not UTF-8"):
        read_captions(latin, format="tokens")
    with pytest.raises(InputError, match=r"captions_val2017.json, line 2: invalid JSON"):
        read_captions(broken)
    with pytest.raises(ToolError, match=r"split lists \(split_files\) apply to token"):
        read_captions(broken, split_files={"train": latin})
