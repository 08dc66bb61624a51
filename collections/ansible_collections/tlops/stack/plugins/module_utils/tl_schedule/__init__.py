# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""tl_schedule's code, by step: expression (when it runs, and in which time zone), validate
(the rest of the input), read (what EventBridge Scheduler holds, and the view), apply (the
calls that change it), states (present and absent)."""
