"""Without PyTorch, charnn installs and runs, and --backend torch says what to install."""

import subprocess
import sys

# PyTorch made unimportable in a fresh interpreter, whether or not it is installed here
WITHOUT_TORCH = ("import sys; sys.modules['torch'] = None\n"
                 "from charnn.cli import main\n"
                 "sys.exit(main(sys.argv[1:]))\n")


def test_backend_torch_without_pytorch_names_the_extra_in_one_line(tiny_text_file, tmp_path):
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "train", str(tiny_text_file),
                           "--backend", "torch", "--updates", "2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == ("charnn: error: --backend torch needs torch, which is not installed; "
                           'install it with: pip install -e ".[torch]"\n')
    # and the CPU backends train as before
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, "train", str(tiny_text_file),
                           "--backend", "numpy", "--hidden", "8", "--updates", "2",
                           "--out", str(tmp_path / "s"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
