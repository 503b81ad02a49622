"""Model backends behind one protocol: the only place that knows vLLM, transformers or HTTP."""
