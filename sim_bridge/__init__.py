"""ROS-free simulation tasks, scripted demonstrators and rollouts (knows nothing of CLASS).

``make_task(name, variant, **kwargs)`` builds a task; task modules are imported on first use.
"""

from sim_bridge.task import PolicyLike, Task, make_task, register_task, task_names, task_variants

__all__ = ["PolicyLike", "Task", "make_task", "register_task", "task_names", "task_variants"]
