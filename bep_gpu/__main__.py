"""python -m bep_gpu {train,eval,bench,summary} ...: the same commands as bep-train, bep-eval, ..."""
import sys


def main() -> int:
    commands = {"train": "train", "eval": "evaluate", "bench": "bench", "summary": "summary", "export": "export"}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m bep_gpu {{{','.join(commands)}}} ...", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(f"bep_gpu.cli.{commands[sys.argv[1]]}")
    return module.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
