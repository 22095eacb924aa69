"""Validate an XML file against an XML Schema with lxml.

Usage: junit_validate.py SCHEMA.xsd REPORT.xml

Exit 0 and print "valid" when the report validates; exit 1 and print each
schema error (line:column: message) when it does not. tests/it/qa.rs runs it
on the JUnit XML `twin expect --junit` writes, with the Jenkins schema
vendored beside it (junit-10.xsd).
"""

import sys

from lxml import etree


def main() -> int:
    schema = etree.XMLSchema(etree.parse(sys.argv[1]))
    doc = etree.parse(sys.argv[2])
    if schema.validate(doc):
        print("valid")
        return 0
    for e in schema.error_log:
        print(f"{e.line}:{e.column}: {e.message}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
