"""Cost model: device profiles, per-kernel roofline latency, memory planning and end-to-end prediction."""
