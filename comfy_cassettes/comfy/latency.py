"""How soon real ComfyUI lets a client see a job, measured in the 0.3.64 captures: the floors the replay's
faithful timings keep, so a client that works against the real server never meets a job quicker than it.

ComfyUI's POST /prompt handler only puts the prompt in the queue (server.py post_prompt); the job runs on the
prompt worker thread (main.py prompt_worker), whose messages reach /ws through the event loop's message queue
(send_sync). A job can therefore begin while its POST answer is still on the way, but in the captures it never
ended before the client had read that answer: a client may map the prompt_id of ``executing`` null to the
answer it got (ComfyScript does). The shortest job, answer read to ``executing`` null, was a cached SaveImage
re-run (subfolder_prefix, third prompt): 0.6 ms; across the 0.3.64 captures 0.6–17 400 ms.
"""

from __future__ import annotations

# Seconds from the POST /prompt answer to the job's terminal message: the quickest any capture shows.
FASTEST_JOB = 0.0006

# The longest any capture's idle ComfyUI took from receiving a POST /prompt to ``execution_start`` (subfolder_prefix,
# the first prompt of a fresh server: 0.342 s). A recorded delay longer than this was time spent queued behind
# other prompts of that recording, not the job's own: a replay of the job alone does not wait for it.
LONGEST_IDLE_START = 0.342
