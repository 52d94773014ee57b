"""The operator console: server-rendered pages under `/console` (RELAY_CONSOLE) to find a watch,
see what was sent and what came back, and redeliver, cancel or recover with a click; the pages
call the same store functions as the API."""
