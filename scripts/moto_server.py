"""moto's server for the AWS tests, with one change to how DynamoDB queries run.

moto answers every Query by sorting every item of the table and then keeping the partition's, so a test's
cost grows with everything the table holds and the aggregator's narrow link-state queries cost as much as a
scan. DynamoDB reads only the queried partition; so does this: a Query on the table's own key (not an index)
starts from its partition's items. What a Query answers is unchanged.
"""

import sys
import threading

from moto.dynamodb.models import table as _table
from moto.server import main

_partition = threading.local()
_query = _table.Table.query
_all_items = _table.Table.all_items


def _narrow_query(self, hash_key, *args, **kwargs):
    index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
    _partition.key = hash_key if not index_name and self.range_key_attr else None
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        _partition.key = None


def _partition_items(self):
    key = getattr(_partition, "key", None)
    if key is None:
        return _all_items(self)
    items = self.items.get(key)
    if not items:
        return []
    return sorted(items.values(), key=lambda item: item.range_key)


_table.Table.query = _narrow_query
_table.Table.all_items = _partition_items

if __name__ == "__main__":
    sys.exit(main())
