"""``python -m training data {download,download-sbd,prepare-sbd,check,synth,prepare,preview}``:
get, check, generate and look at data in VOC's layout (with SBD's extra labels), CVAT's
"Segmentation mask 1.1" export as it is, or Cityscapes' layout. Heavy imports happen inside the
commands, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.cli.args import size_arg
from training.data.download import VOC2012_MD5, VOC2012_URL
from training.data.sbd import SBD_MD5, SBD_URL

NUM_CLASSES_HELP = "default: the root's labelmap.txt, or VOC's 21"


def _download(args: argparse.Namespace) -> int:
    from training.data.download import download_voc2012

    voc_root = download_voc2012(
        args.root, url=args.url, from_tar=args.from_tar, md5=args.md5, retries=args.retries
    )
    print(f"VOC 2012 ready at {voc_root}")
    return 0


def _download_sbd(args: argparse.Namespace) -> int:
    from training.data.sbd import download_sbd

    sbd_dir = download_sbd(
        args.root, url=args.url, from_tar=args.from_tar, md5=args.md5, retries=args.retries
    )
    print(f"SBD ready at {sbd_dir}; next: data prepare-sbd --voc-root VOC_ROOT --sbd {sbd_dir}")
    return 0


def _prepare_sbd(args: argparse.Namespace) -> int:
    from training.data.sbd import prepare_sbd

    print(prepare_sbd(args.voc_root, args.sbd).summary())
    return 0


def _check(args: argparse.Namespace) -> int:
    from training.data.check import check_root

    report = check_root(args.root, num_classes=args.num_classes, progress=True)
    print(report.format())
    return 0 if report.ok else 1


def _synth(args: argparse.Namespace) -> int:
    from training.data.labelmap import read_labelmap
    from training.data.synth import WORLDS, write_synthetic_cvat, write_synthetic_voc

    world = args.classes[0] if len(args.classes) == 1 and args.classes[0] in WORLDS else None
    if args.labelmap or world:
        if args.val_fraction is not None:
            raise ValueError(
                "--val-fraction is for VOC's layout; CVAT's has one list (default.txt), "
                "split into train, val and test when it is read"
            )
        labelmap = read_labelmap(args.labelmap) if args.labelmap else WORLDS[world]
        out = write_synthetic_cvat(
            args.out, count=args.count, seed=args.seed, size=args.size, labelmap=labelmap
        )
        classes, layout = ", ".join(labelmap.names), " in CVAT's layout"
    else:
        options = {} if args.val_fraction is None else {"val_fraction": args.val_fraction}
        out = write_synthetic_voc(
            args.out,
            count=args.count,
            seed=args.seed,
            size=args.size,
            classes=args.classes,
            **options,
        )
        classes, layout = ", ".join(args.classes), ""
    width, height = args.size
    print(f"wrote {args.count} synthetic {width}x{height} samples ({classes}){layout} to {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from training.data.index_masks import prepare_index_masks
    from training.data.layouts import open_layout

    layout = open_layout(args.root)
    lists = args.lists or layout.list_names()
    if not lists:
        missing = layout.missing_lists_problem()
        if not missing.path.exists():
            raise FileNotFoundError(
                f"{missing.path} does not exist: not a VOC-format root (nor Cityscapes')"
            )
        raise FileNotFoundError(str(missing))
    ids: dict[str, None] = {}
    for name in lists:
        ids.update(dict.fromkeys(layout.list_ids(name)))
    index_dir = prepare_index_masks(layout, list(ids), args.index_dir, num_classes=args.num_classes)
    print(f"index masks for {len(ids)} samples ({', '.join(lists)}) in {index_dir}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from training.data.preview import write_preview

    out = write_preview(
        args.root,
        args.split,
        args.out,
        augment=args.augment,
        count=args.count,
        seed=args.seed,
        input_size=args.input_size[::-1],
        index_dir=args.index_dir,
    )
    print(f"wrote {out}")
    return 0


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    """Adds ``data`` and its sub-commands to the ``python -m training`` parser."""
    from training.data.synth import (
        DEFAULT_CLASSES,
        OBJECT_STYLES,
        STYLES,
        SURFACES,
        VOC_VAL_FRACTION,
        WORLDS,
    )

    data = commands.add_parser(
        "data",
        help="get, check, generate and preview data (VOC's layout with SBD, CVAT's export, "
        "Cityscapes)",
    )
    data_commands = data.add_subparsers(dest="data_command", required=True)

    p = data_commands.add_parser("download", help="download, verify and extract VOC 2012")
    p.add_argument("--root", type=Path, required=True, help="folder to hold the tar and VOCdevkit/")
    p.add_argument("--url", default=VOC2012_URL, help="mirror URL of VOCtrainval_11-May-2012.tar")
    p.add_argument("--from-tar", type=Path, help="use this already downloaded tar instead")
    p.add_argument("--md5", default=VOC2012_MD5, help="expected MD5 of the tar")
    p.add_argument("--retries", type=int, default=3, help="attempts before giving up (resumable)")
    p.set_defaults(func=_download)

    p = data_commands.add_parser(
        "download-sbd", help="download, verify and extract SBD (benchmark.tgz, VOC's extra labels)"
    )
    p.add_argument(
        "--root", type=Path, required=True, help="folder to hold the tgz and benchmark_RELEASE/"
    )
    p.add_argument("--url", default=SBD_URL, help="mirror URL of benchmark.tgz")
    p.add_argument("--from-tar", type=Path, help="use this already downloaded benchmark.tgz")
    p.add_argument("--md5", default=SBD_MD5, help="expected MD5 of the tgz")
    p.add_argument("--retries", type=int, default=3, help="attempts before giving up (resumable)")
    p.set_defaults(func=_download_sbd)

    p = data_commands.add_parser(
        "prepare-sbd",
        help="convert SBD's .mat labels into a VOC root once; enables --train-split train_aug",
    )
    p.add_argument("--voc-root", type=Path, required=True, help="VOCdevkit/VOC2012")
    p.add_argument(
        "--sbd",
        type=Path,
        required=True,
        help="benchmark_RELEASE (or the folder above it, or its dataset/)",
    )
    p.set_defaults(func=_prepare_sbd)

    p = data_commands.add_parser(
        "check", help="verify a dataset root against its classes, list every problem"
    )
    p.add_argument(
        "--root",
        type=Path,
        required=True,
        help="VOC's layout, a CVAT export, or a Cityscapes root (leftImg8bit/, gtFine/)",
    )
    p.add_argument("--num-classes", type=int, help=NUM_CLASSES_HELP)
    p.set_defaults(func=_check)

    p = data_commands.add_parser(
        "synth", help="write a synthetic dataset (VOC's layout, or CVAT's for own classes)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=size_arg, default=(480, 360), help="WIDTHxHEIGHT")
    classes = p.add_mutually_exclusive_group()
    classes.add_argument(
        "--classes",
        type=lambda s: s.split(","),
        default=list(DEFAULT_CLASSES),
        help=f"comma-separated VOC classes, from {','.join(sorted(STYLES))} (VOC's layout); "
        f"or {' or '.join(WORLDS)}: own classes in CVAT's layout "
        f"(default: {','.join(DEFAULT_CLASSES)})",
    )
    classes.add_argument(
        "--labelmap",
        type=Path,
        help="CVAT labelmap.txt of the classes to draw, in CVAT's layout: "
        f"{', '.join(SURFACES)} and objects from {','.join(sorted(OBJECT_STYLES))}",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        help=f"VOC's layout: share of ids in val.txt (default: {VOC_VAL_FRACTION})",
    )
    p.set_defaults(func=_synth)

    p = data_commands.add_parser("prepare", help="convert masks to index PNGs once")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--lists", nargs="+", help="split lists to cover (default: all of them)")
    p.add_argument("--index-dir", type=Path, help="default: ROOT/SegmentationClassIndex")
    p.add_argument("--num-classes", type=int, help=NUM_CLASSES_HELP)
    p.set_defaults(func=_prepare)

    p = data_commands.add_parser("preview", help="PNG grid of pipeline outputs")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--augment", action="store_true", help="apply training augmentation")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=size_arg, default=(384, 384), help="WIDTHxHEIGHT")
    p.add_argument("--index-dir", type=Path)
    p.set_defaults(func=_preview)
