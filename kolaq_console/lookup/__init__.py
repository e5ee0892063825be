"""Lookup: find an order, a customer or a product as an operator types, and read its record
with everything about it (emails, failed jobs, activity). A failure is an incident: the
console's record screens, links and `kolaq-console lookup` all read from here."""

from kolaq_console.lookup.records import customer_record, order_record, product_record
from kolaq_console.lookup.search import Match, find
from kolaq_console.lookup.story import lookup, resolve
from kolaq_console.lookup.subjects import Subject, email_subject, job_subject

__all__ = ["Match", "Subject", "customer_record", "email_subject", "find", "job_subject",
           "lookup", "order_record", "product_record", "resolve"]
