"""Raw HTTP/1.1 for the python parts of the integration scripts (api-robustness.sh): requests
exactly as written on a socket, their answers read until the server closes the connection."""


def read_to_close(s):
    """Every byte s receives until the peer closes it."""
    buf = b""
    while chunk := s.recv(65536):
        buf += chunk
    return buf


def status(answer):
    """The status code of a raw answer (an empty answer raises)."""
    return int(answer.split(b" ", 2)[1])
