"""``python -m imagegen`` is the ``imagegen`` command."""

from imagegen.command import main

main()
