"""Hand-written runtime of the generated client: transport, retries, errors, streams,
pagination and job waiting. Generated modules import it; it imports nothing generated."""
