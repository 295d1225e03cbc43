"""A Discord assistant that streams OpenRouter answers into live-edited messages."""
