"""Find or fetch a discriminator checkpoint and print its local folder (the last line of stdout).

    python scripts/download_discriminator.py --list
    python scripts/download_discriminator.py ledger-tiny
    python scripts/download_discriminator.py https://example.org/disc.tar.gz --sha256 HEX --json
    python scripts/download_discriminator.py org/step-prm@v1.0 --cache-dir /data/gan-cot --offline

The spec is a registry name (discriminators/registry.yaml), an archive URL (.tar.gz/.tgz/.tar/.zip, http(s)://
or file://, pinned by --sha256 unless the registry knows it), a Hub id org/name[@revision] or a local folder.
Downloads go to $GAN_COT_CACHE/discriminators (default ~/.cache/gan-cot/discriminators) and are checked:
sha256, archive member paths, no pickle weights unless --allow-pickle, no checkpoint-shipped code.
With --json the last line is one JSON object: path, source, sha256 (and name, revision, cached).
"""

from __future__ import annotations

import argparse
import sys

from gan_cot.discriminator.registry import (
    DEFAULT_REGISTRY,
    DiscriminatorSourceError,
    default_cache_dir,
    load_registry,
    resolve_source,
)
from gan_cot.usage import UsageError, fail, print_json


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one `error:` line and exit code 2, like every other failure
        fail(f"{message} (see --help)")


def parse_args(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="registry name, archive URL, Hub id org/name[@revision] or local folder")
    p.add_argument("--sha256", default=None, help="sha256 of the archive (required for a URL not in the registry)")
    p.add_argument("--cache-dir", default=None, help=f"download cache (default {default_cache_dir()})")
    p.add_argument("--offline", action="store_true", help="use the cache only; never touch the network")
    p.add_argument(
        "--allow-pickle", action="store_true", help="accept pickle weights (.bin/.pt/...); only for trusted sources"
    )
    p.add_argument("--registry", default=str(DEFAULT_REGISTRY), help="registry file (default %(default)s)")
    p.add_argument("--list", action="store_true", help="print the registry names with their card summaries")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    if not args.list and not args.spec:
        raise UsageError("give a registry name, archive URL, Hub id or folder (or --list); see --help")
    if args.list and args.spec:
        raise UsageError("--list takes no spec")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        if args.list:
            entries = load_registry(args.registry)
            for entry in entries.values():
                print(entry.describe())
            if args.json:
                print_json({"registry": args.registry, "names": sorted(entries)})
            elif not entries:
                print(f"registry {args.registry} is empty")
            return 0
        result = resolve_source(
            args.spec,
            sha256=args.sha256,
            cache_dir=args.cache_dir,
            offline=args.offline,
            allow_pickle=args.allow_pickle,
            registry=args.registry,
        )
    except (UsageError, DiscriminatorSourceError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
    if args.json:
        print(result.path, flush=True)
        print_json(result.to_json())
    else:
        extra = f", sha256 {result.sha256}" if result.sha256 else ""
        extra += f", revision {result.revision}" if result.revision else ""
        extra += ", from the cache" if result.cached else ""
        print(f"{args.spec}: {result.source}{extra}", flush=True)
        print(result.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
