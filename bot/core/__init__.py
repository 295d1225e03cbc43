"""The Discord-free core: SSE decoding, the Responses client, the Redis store, the renderer."""
