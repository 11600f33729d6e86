"""ops: the processes around the flows on one machine or several: the local stack (Prefect server, PostgreSQL,
workers, the Bento service, the Evidently UI), and the demo's closed loop. Imports flows/, never the reverse."""
