"""Averaging weights: of students (a uniform "model soup", Wortsman et al., 2022), and of one
student over the last steps of its own training (tail averaging, as in stochastic weight averaging).

Students fine-tuned from one base on the same teacher answers, each with its own draws of negative
types or number of passes, end near one another in weight space, and the mean of their weights
can answer better than either (measured in docs/training.md). The averaged student is one model,
so it decodes as fast as each of them. Inside one run, the mean of the weights
over its last steps costs one copy of the trained weights and no time."""
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .component import pipeline_model
from .errors import UserError
from .files import atomic_folder, check_output_folder
from .loading import load_causal_lm


def average_students(pipelines: Sequence[Union[str, Path]], output: Union[str, Path]) -> Path:
    """Write `output`: the first pipeline (its config, labels, threshold and tokenizer) with the mean
    of every pipeline's student weights. The students must share an architecture and a vocabulary,
    as students trained from one base do; the sum is kept in fp32 and stored in the first
    student's dtype."""
    pipelines, output = [Path(pipeline) for pipeline in pipelines], Path(output)
    if len(pipelines) < 2:
        raise UserError(f"averaging needs at least two student pipelines, got {len(pipelines)}")
    check_output_folder(output, {f"student pipeline #{number}": pipeline for number, pipeline in enumerate(pipelines, 1)})
    if output.exists():
        raise UserError(f"{output} exists: give a new folder for the averaged pipeline, so that no student is overwritten")
    folders = [pipeline_model(pipeline) for pipeline in pipelines]
    student, tokenizer = load_causal_lm(folders[0], f"{pipelines[0]}'s student", dtype="auto")
    vocab = tokenizer.get_vocab()
    total: Dict[str, torch.Tensor] = {name: tensor.detach().float().clone() for name, tensor in student.state_dict().items()}
    for pipeline, folder in zip(pipelines[1:], folders[1:]):
        model, tokenizer = load_causal_lm(folder, f"{pipeline}'s student", dtype="auto")
        if tokenizer.get_vocab() != vocab:
            raise UserError(f"{pipeline}'s student has another vocabulary than {pipelines[0]}'s: only students of one base can be averaged")
        weights = model.state_dict()
        mismatched = sorted(
            set(total) ^ set(weights) | {name for name in set(total) & set(weights) if total[name].shape != weights[name].shape}
        )
        if mismatched:
            raise UserError(
                f"{pipeline}'s student is not shaped as {pipelines[0]}'s ({len(mismatched)} weights differ, e.g. "
                f"{mismatched[0]}): only students of one base can be averaged"
            )
        for name, tensor in weights.items():
            total[name] += tensor.float()
    student.load_state_dict({name: tensor / len(pipelines) for name, tensor in total.items()})
    # The first student's weight files stay behind: its folder may be sharded otherwise than the mean.
    with atomic_folder(output) as partial:
        shutil.copytree(pipelines[0], partial, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin"))
        student.save_pretrained(pipeline_model(partial), safe_serialization=True)
    return output


class RunningMean:
    """The uniform mean of parameters over the steps `update` is called at, kept in fp32 beside
    them. accelerate saves and restores it with the run's checkpoints (`state_dict`), so a resumed
    run averages the same steps."""

    def __init__(self, parameters: Sequence[torch.nn.Parameter]):
        self.parameters = list(parameters)
        self.count = 0
        self.mean: Optional[List[torch.Tensor]] = None

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        if self.mean is None:
            self.mean = [parameter.detach().float().clone() for parameter in self.parameters]
            return
        for mean, parameter in zip(self.mean, self.parameters):
            mean.lerp_(parameter.detach().float(), 1 / self.count)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Put the mean into the parameters (for saving the student)."""
        if self.mean is None:
            raise UserError("no step was averaged")
        for mean, parameter in zip(self.mean, self.parameters):
            parameter.copy_(mean)

    def state_dict(self) -> Dict[str, Any]:
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.count, self.mean = state["count"], state["mean"]
