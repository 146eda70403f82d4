"""Media in requests: reading files and fetching URLs under the access policy (policy), checking and
decoding images off the event loop (images), and putting every image and audio part of a chat inline for
the engine (resolve). The one place the router reads bytes a client pointed at."""
