"""Function tools the model may call during an answer: the registry, the loop, and the tools."""
