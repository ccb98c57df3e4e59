from diagnostics.models import ProbeRecord


def probe_record_get(*, pk: int) -> ProbeRecord:
    return ProbeRecord.objects.get(pk=pk)
