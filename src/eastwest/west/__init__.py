"""The west side: what runs on a hub (runner, wire format, protocol, job contract). No Airflow here."""
