"""Operations: doctor, templates sync/copy, spend and audit exports."""
