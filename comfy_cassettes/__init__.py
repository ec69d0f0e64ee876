"""Record real ComfyUI sessions into YAML cassettes and replay them as a live ComfyUI."""
