"""Audit entries are append-only in the database too (PostgreSQL trigger), and the two staff roles exist.

The trigger refuses UPDATE and DELETE on accounts_auditentry; on SQLite this step does nothing
(the model refuses there). The groups: "Support" (use the console) and "Support lead" (also the
lead actions); add people to them in the admin.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_GROUP = "Support"
LEAD_GROUP = "Support lead"

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION accounts_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'audit entries are append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS accounts_auditentry_append_only ON accounts_auditentry;
CREATE TRIGGER accounts_auditentry_append_only BEFORE UPDATE OR DELETE ON accounts_auditentry
    FOR EACH ROW EXECUTE FUNCTION accounts_auditentry_append_only();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS accounts_auditentry_append_only ON accounts_auditentry;
DROP FUNCTION IF EXISTS accounts_auditentry_append_only();
"""


def trigger_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL)


def trigger_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


def roles_create(apps, schema_editor):
    accounts = apps.get_app_config("accounts")
    accounts.models_module = True  # permissions are normally made after migrate; the groups need them now
    create_permissions(accounts, apps=apps, verbosity=0)
    accounts.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    console = Permission.objects.get(content_type__app_label="accounts", codename="use_staff_console")
    lead = Permission.objects.get(content_type__app_label="accounts", codename="lead_actions")
    support, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    support.permissions.add(console)
    leads, _ = Group.objects.get_or_create(name=LEAD_GROUP)
    leads.permissions.add(console, lead)


def roles_drop(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[SUPPORT_GROUP, LEAD_GROUP]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_auditentry"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(trigger_create, trigger_drop),
        migrations.RunPython(roles_create, roles_drop),
    ]
