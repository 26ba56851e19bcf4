"""groundwork: one Pulumi program for every stack; `groundwork:cloud` picks AWS or GCP."""

from stacks import program

program()
