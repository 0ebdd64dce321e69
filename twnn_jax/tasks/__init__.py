"""The paper's tasks on CPU-sized data: sine-wave generation, 8x8 digits, adding and copy memory."""

from .base import Task as Task
from .brackets import brackets_task as brackets_task
from .digits import digits_task as digits_task
from .sequences import adding_task as adding_task
from .sequences import copy_task as copy_task
from .sine import sine_task as sine_task

BRACKET_TASKS = ("brackets-easy", "brackets-hard")  # seed 003's texts: its tanh RNN (fixed or growing), no model choice
TASKS = ("sine", "digits", "adding", "copy", *BRACKET_TASKS)
