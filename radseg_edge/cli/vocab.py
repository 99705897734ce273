"""`radseg-edge vocab`: build a vocabulary file from class names once, use it anywhere without a text tower."""

from __future__ import annotations

import argparse

from radseg_edge.errors import VocabularyError


def register(sub) -> None:
    p = sub.add_parser("vocab", help="build or inspect class vocabularies (text embeddings)",
                       description="Class names -> text embeddings with the 80 ImageNet templates.")
    vs = p.add_subparsers(dest="vocab_command", metavar="ACTION")
    b = vs.add_parser("build", help="embed class names with a text tower and save a vocabulary file",
                      description="Needs the text extra (pip install 'radseg-edge[text]') and the text model "
                                  "(downloaded through huggingface_hub on first use, cached per class).")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", metavar="'a,b,c'", help="comma-separated class names")
    src.add_argument("--classes-file", metavar="FILE", help="one class name per line")
    b.add_argument("--text-model", default="google/siglip2-so400m-patch16-naflex",
                   help="Hugging Face text tower matching the checkpoint's language head "
                        "(C-RADIOv3-B/L: google/siglip2-so400m-patch16-naflex; -H: google/siglip2-giant-opt-patch16-384)")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="vocabulary file to write (.safetensors)")
    b.add_argument("--no-cache", action="store_true", help="do not read or write the per-class embedding cache")
    b.set_defaults(func=build)
    s = vs.add_parser("show", help="print a vocabulary file's classes and metadata")
    s.add_argument("file")
    s.set_defaults(func=show)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def build(args: argparse.Namespace) -> int:
    from radseg_edge.models.text import Vocabulary, parse_class_list, read_class_file

    names = parse_class_list(args.classes) if args.classes else read_class_file(args.classes_file)
    vocab = Vocabulary.build(names, args.text_model, cache_dir=False if args.no_cache else None, progress=True)
    path = vocab.save(args.output)
    print(f"wrote {path}: {len(vocab)} classes, {vocab.dim}-d, text model {vocab.text_model}")
    return 0


def show(args: argparse.Namespace) -> int:
    from radseg_edge.models.text import Vocabulary

    vocab = Vocabulary.load(args.file)
    if not len(vocab):
        raise VocabularyError("empty vocabulary")
    print(f"{args.file}: {len(vocab)} classes, {vocab.dim}-d, text model {vocab.text_model}, templates {vocab.templates_hash or '-'}")
    for i, n in enumerate(vocab.names):
        print(f"{i:4d} {n}")
    return 0
