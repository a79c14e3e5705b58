"""Item counts kept by triggers instead of a scan of every impression each minute: each
statement that writes impressions or clicks adds one row per item to news_itemcountdelta
(see ItemCountDelta), and the counts job sums those in. The counts are recomputed from the
log once here, in the transaction that creates the triggers, so they start exact."""

from django.db import migrations, models

# (trigger, table, event, transition table, the rows it adds: item_id, shown, clicked)
TRIGGERS = [
    ("impression_counts_insert", "news_impression", "INSERT", "NEW TABLE AS changed",
     "SELECT item_id, count(*), 0 FROM changed GROUP BY item_id"),
    ("impression_counts_delete", "news_impression", "DELETE", "OLD TABLE AS changed",
     "SELECT item_id, -count(*), 0 FROM changed GROUP BY item_id"),
    # A click counts as a shown story's click only with its impression (imported history has none).
    ("click_counts_insert", "news_click", "INSERT", "NEW TABLE AS changed",
     "SELECT item_id, 0, count(*) FROM changed WHERE impression_id IS NOT NULL GROUP BY item_id"),
    ("click_counts_delete", "news_click", "DELETE", "OLD TABLE AS changed",
     "SELECT item_id, 0, -count(*) FROM changed WHERE impression_id IS NOT NULL GROUP BY item_id"),
    # Its impression deleted (SET NULL): the click no longer counts.
    ("click_counts_update", "news_click", "UPDATE", "OLD TABLE AS before NEW TABLE AS after",
     "SELECT item_id, 0, sum(n) FROM (SELECT item_id, 1 AS n FROM after WHERE impression_id IS NOT NULL"
     " UNION ALL SELECT item_id, -1 FROM before WHERE impression_id IS NOT NULL) AS d"
     " GROUP BY item_id HAVING sum(n) <> 0"),
]

CREATE = "".join(f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO news_itemcountdelta (item_id, shown, clicked) {rows};
    RETURN NULL;
END $$;
CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition}
    FOR EACH STATEMENT EXECUTE FUNCTION {name}();
""" for name, table, event, transition, rows in TRIGGERS)

DROP = "".join(f"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}();\n" for name, table, *_ in TRIGGERS)

RECOUNT = """
WITH shown AS (SELECT item_id, count(*) AS n FROM news_impression GROUP BY item_id),
clicked AS (SELECT item_id, count(*) AS n FROM news_click WHERE impression_id IS NOT NULL GROUP BY item_id)
UPDATE news_item AS i
SET shown_count = COALESCE(s.n, 0), click_count = COALESCE(c.n, 0)
FROM news_item AS j LEFT JOIN shown AS s ON s.item_id = j.id LEFT JOIN clicked AS c ON c.item_id = j.id
WHERE i.id = j.id AND (i.shown_count, i.click_count) IS DISTINCT FROM (COALESCE(s.n, 0), COALESCE(c.n, 0));
"""


class Migration(migrations.Migration):

    dependencies = [
        ('news', '0008_impression_client'),
    ]

    operations = [
        migrations.CreateModel(
            name='ItemCountDelta',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('item_id', models.BigIntegerField()),
                ('shown', models.IntegerField(default=0)),
                ('clicked', models.IntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name='click',
            index=models.Index(fields=['clicked_at'], name='click_recent_idx'),
        ),
        migrations.RunSQL(CREATE + RECOUNT, reverse_sql=DROP),
    ]
