"""Distillation: raw text -> passages -> teacher annotations, with spacy-llm.

Importing this package registers the spacy-llm task `spacy_uniner.OpenNER.v1` and the models
`spacy_uniner.RecordedTeacher.v1` and `spacy_uniner.OpenAICompatible.v1` (the package's entry points
do the same for configs loaded without it).
"""
from .passages import make_passages, read_documents, split_passages
from .pile_ner import read_pile_ner, read_records, teacher_response
from .run import distill, distill_report, load_distiller, read_passages, run_distillation
from .task import ANSWER_KEY, OpenNERTask, make_open_ner_task
from .teachers import OpenAICompatible, RecordedTeacher, make_openai_compatible, make_recorded_teacher

__all__ = [
    "ANSWER_KEY",
    "OpenAICompatible",
    "OpenNERTask",
    "RecordedTeacher",
    "distill",
    "distill_report",
    "load_distiller",
    "make_open_ner_task",
    "make_openai_compatible",
    "make_passages",
    "make_recorded_teacher",
    "read_documents",
    "read_passages",
    "read_pile_ner",
    "read_records",
    "run_distillation",
    "split_passages",
    "teacher_response",
]
