"""The light CRM: companies and deals that give an agent the customer's context."""
