"""ROS-free simulation tasks, scripted demonstrators and rollouts (knows nothing of CLASS).

``make_task(name, variant, **kwargs)`` builds a task; task modules are imported on first use.
``task.make_expert(seed=..., kind=..., **kwargs)`` builds one of its registered demonstrators
(``expert_kinds(name)``); expert modules register themselves and are imported on first use.
"""

from sim_bridge.task import (
    PolicyLike,
    Task,
    expert_kinds,
    make_task,
    register_expert,
    register_task,
    task_names,
    task_variants,
)

__all__ = [
    "PolicyLike",
    "Task",
    "expert_kinds",
    "make_task",
    "register_expert",
    "register_task",
    "task_names",
    "task_variants",
]
